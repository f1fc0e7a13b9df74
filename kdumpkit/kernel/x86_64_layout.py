"""The x86_64 kernel's fixed address layout (the one home of these constants), and the
kernel image map -- the one translation that needs no page tables:
``paddr = vaddr - __START_KERNEL_map + phys_base``.

:mod:`kdumpkit.kernel.kallsyms` reads the kallsyms tables (in the image) through
:func:`kernel_image_reader`; :mod:`kdumpkit.kernel.x86_64` translates the rest and
may itself look kernel variables up through kallsyms, so neither imports the other
in a circle.
"""

from __future__ import annotations

from collections.abc import Callable

from kdumpkit.dump.base import Dump
from kdumpkit.dump.errors import DumpError

#: __START_KERNEL_map: the kernel image's link base; the modules lie above it.
START_KERNEL_MAP = 0xFFFFFFFF80000000
#: The lowest kernel address with 4-level paging (the upper canonical half); below it
#: is user space or small numbers.
KERNEL_SPACE_START = 0xFFFF800000000000
#: The lowest kernel address with 5-level paging (LA57), the bound that holds for both.
KERNEL_SPACE_START_L5 = 0xFF00000000000000
#: __PAGE_OFFSET_BASE_L4 / _L5: the direct map without KASLR.
PAGE_OFFSET_L4 = 0xFFFF888000000000
PAGE_OFFSET_L5 = 0xFF11000000000000
VMEMMAP_START_L4 = 0xFFFFEA0000000000
VMEMMAP_START_L5 = 0xFFD4000000000000
#: KERNEL_IMAGE_SIZE when VMCOREINFO does not say (the non-KASLR default, 512 MiB).
DEFAULT_KERNEL_IMAGE_SIZE = 512 << 20


def phys_base_from_headers(dump: Dump) -> int | None:
    """phys_base from the dump's headers (for kernels without NUMBER(phys_base))."""
    # /proc/vmcore's kernel-text PT_LOAD has p_vaddr in __START_KERNEL_map;
    # a kdump-compressed file records it in its sub-header.
    for seg in getattr(dump, "segments", None) or ():
        if seg.vaddr >= START_KERNEL_MAP:
            return int(seg.paddr - (seg.vaddr - START_KERNEL_MAP))
    value = dump.header.extra.get("phys_base")
    if isinstance(value, int):
        return value - (1 << 64) if value >= 1 << 63 else value
    return None


def kernel_phys_base(dump: Dump) -> int:
    """Where the kernel image sits in physical memory, less its link address: VMCOREINFO's
    NUMBER(phys_base) (Linux 4.10+), else the headers', else 0."""
    info = dump.vmcoreinfo
    phys_base = info.phys_base if info is not None else None
    if phys_base is None:
        phys_base = phys_base_from_headers(dump)
    return phys_base or 0


def kernel_image_reader(dump: Dump) -> Callable[[int, int], bytes]:
    """``read(vaddr, size)`` for addresses in the kernel image mapping."""
    info = dump.vmcoreinfo
    phys_base = kernel_phys_base(dump)
    image_size = (info.number("KERNEL_IMAGE_SIZE") if info else None) or DEFAULT_KERNEL_IMAGE_SIZE

    def read(vaddr: int, size: int) -> bytes:
        if not START_KERNEL_MAP <= vaddr <= vaddr + size <= START_KERNEL_MAP + image_size:
            raise DumpError(f"{vaddr:#x}: not in the kernel image mapping")
        return dump.read(vaddr - START_KERNEL_MAP + phys_base, size)

    return read
