"""Which architecture a dump's kernel is, and its kernel image mapping: the one kernel
translation that needs no page tables (x86_64: ``vaddr - __START_KERNEL_map + phys_base``;
arm64: ``vaddr - kimage_voffset``).

The dump's own header says the machine (the ELF ``e_machine``, a kdump file's
``utsname.machine``); where it does not (QEMU's kdump output writes "Unknown" on arm64),
VMCOREINFO does: only arm64 exports ``NUMBER(kimage_voffset)`` and
``NUMBER(TCR_EL1_T1SZ)``, only x86_64 ``SYMBOL(init_top_pgt)`` and ``NUMBER(phys_base)``.

:mod:`kdumpkit.kernel.kallsyms` reads its tables (in the image) through
:func:`kernel_image_reader`, so it needs neither page tables nor the translators, which
may themselves look kernel variables up through kallsyms.
"""

from __future__ import annotations

from collections.abc import Callable

from kdumpkit.dump.base import Dump
from kdumpkit.dump.errors import DumpError
from kdumpkit.kernel import x86_64_layout

#: The architectures whose kernels this layer translates.
SUPPORTED = ("x86_64", "aarch64")
#: Other spellings of the same machines (utsname.machine, tools' names).
_ALIASES = {"arm64": "aarch64", "amd64": "x86_64"}
U64 = (1 << 64) - 1


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


def kernel_image_reader(dump: Dump) -> Callable[[int, int], bytes]:
    """``read(vaddr, size)`` for addresses in the kernel image mapping."""
    machine = machine_of(dump)
    if machine == "x86_64":
        return x86_64_layout.kernel_image_reader(dump)
    if machine == "aarch64":
        info = dump.vmcoreinfo
        voffset = info.number("kimage_voffset") if info is not None else None
        if voffset is None:
            raise DumpError(f"{dump.name}: VMCOREINFO has no NUMBER(kimage_voffset)")

        def read(vaddr: int, size: int) -> bytes:
            return dump.read((vaddr - voffset) & U64, size)

        return read
    raise DumpError(f"{dump.name}: a {machine} dump; only x86_64 and aarch64 are supported")
