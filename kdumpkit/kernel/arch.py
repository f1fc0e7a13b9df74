"""Which architecture a dump's kernel is, and its address space.

The dump's own header says it (the ELF ``e_machine``, a kdump file's
``utsname.machine``); where it does not (QEMU's kdump output writes "Unknown" on arm64),
VMCOREINFO does: only arm64 exports ``NUMBER(kimage_voffset)`` and
``NUMBER(TCR_EL1_T1SZ)``, only x86_64 ``SYMBOL(init_top_pgt)`` and ``NUMBER(phys_base)``.
"""

from __future__ import annotations

from kdumpkit.dump.base import Dump
from kdumpkit.dump.errors import DumpError
from kdumpkit.kernel import aarch64, x86_64
from kdumpkit.kernel.vaspace import KernelAddressSpace

#: The architectures whose kernels this layer translates.
SUPPORTED = ("x86_64", "aarch64")
#: Other spellings of the same machines (utsname.machine, tools' names).
_ALIASES = {"arm64": "aarch64", "amd64": "x86_64"}


def machine_of(dump: Dump) -> str:
    """The dump's machine as ``uname -m`` names it ("x86_64", "aarch64", ...)."""
    machine = dump.header.machine or ""
    machine = _ALIASES.get(machine, machine)
    if machine in SUPPORTED:
        return machine
    info = dump.vmcoreinfo
    if info is not None:
        if info.number("kimage_voffset") is not None or info.number("TCR_EL1_T1SZ") is not None:
            return "aarch64"
        if info.symbol("init_top_pgt") is not None or info.number("phys_base") is not None:
            return "x86_64"
    return machine or "unknown"


def address_space(dump: Dump) -> KernelAddressSpace:
    """The kernel address space of ``dump``, for its architecture (created once per dump)."""
    machine = machine_of(dump)
    if machine == "aarch64":
        return aarch64.address_space(dump)
    if machine == "x86_64":
        return x86_64.address_space(dump)
    raise DumpError(f"{dump.name}: a {machine} dump; only x86_64 and aarch64 kernels are supported")
