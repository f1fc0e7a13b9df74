"""A dump's kernel address space, for its architecture (:func:`machine_of`, in
:mod:`kdumpkit.kernel.image`, says which)."""

from __future__ import annotations

from kdumpkit.dump.base import Dump
from kdumpkit.dump.errors import DumpError
from kdumpkit.kernel import aarch64, x86_64
from kdumpkit.kernel.image import SUPPORTED, machine_of
from kdumpkit.kernel.vaspace import KernelAddressSpace

__all__ = ["SUPPORTED", "address_space", "machine_of"]


def address_space(dump: Dump) -> KernelAddressSpace:
    """The kernel address space of ``dump``, for its architecture (created once per dump)."""
    machine = machine_of(dump)
    if machine == "aarch64":
        return aarch64.address_space(dump)
    if machine == "x86_64":
        return x86_64.address_space(dump)
    raise DumpError(f"{dump.name}: a {machine} dump; only x86_64 and aarch64 kernels are supported")
