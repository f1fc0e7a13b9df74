"""x86_64 kernel virtual addresses, from VMCOREINFO alone (no vmlinux, no types).

Translation has three paths, tried in this order:

* the kernel text map: ``paddr = vaddr - __START_KERNEL_map + phys_base`` for the
  kernel image (``NUMBER(phys_base)``, which may be negative);
* the direct map: ``paddr = vaddr - page_offset_base`` for ``vaddr`` in
  ``[page_offset_base, page_offset_base + 2**MAX_PHYSMEM_BITS)``;
* a walk of the kernel page tables rooted at ``SYMBOL(init_top_pgt)`` (4 or 5
  levels by ``NUMBER(pgtable_l5_enabled)``, 1 GiB and 2 MiB pages, the
  ``NUMBER(sme_mask)`` encryption bit stripped from every entry).

``page_offset_base`` (randomized under KASLR) is found, in order, from:

1. the ELF PT_LOADs of a /proc/vmcore: every RAM segment has
   ``p_vaddr - p_paddr == page_offset_base`` (kexec-tools and the kernel write it);
2. the kernel variable ``page_offset_base`` read through the kallsyms tables of
   the dump (:mod:`kdumpkit.kernel.kallsyms`, Linux >= 6.0 exports them in VMCOREINFO);
3. the page tables: the first leaf mapping of the kernel half of ``init_top_pgt``
   is the direct map's mapping of the lowest RAM, so ``vaddr - paddr`` of that leaf.

``vmemmap_base`` is read from the kernel variable through kallsyms when possible,
else decoded from the first present ``mem_section``: with SPARSEMEM_VMEMMAP the
kernel stores ``section_mem_map = vmemmap - section_start_pfn`` (plus flag bits
below bit 6), i.e. ``vmemmap_base`` itself.
"""

from __future__ import annotations

import struct
import weakref

from kdumpkit.dump.base import Dump
from kdumpkit.dump.errors import DumpError, PageNotPresentError
from kdumpkit.dump.vmcoreinfo import VmcoreInfo
from kdumpkit.kernel.vaspace import KernelAddressSpace, TranslationError
from kdumpkit.kernel.x86_64_layout import (
    DEFAULT_KERNEL_IMAGE_SIZE,
    KERNEL_SPACE_START,
    KERNEL_SPACE_START_L5,
    PAGE_OFFSET_L4,
    PAGE_OFFSET_L5,
    START_KERNEL_MAP,
    VMEMMAP_START_L4,
    VMEMMAP_START_L5,
    phys_base_from_headers,
)

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PTRS_PER_TABLE = 512
_PRESENT = 1 << 0
_PSE = 1 << 7  # a large page at PUD (1 GiB) or PMD (2 MiB) level
#: Physical address bits of a page-table entry: 12..51.
PTE_PFN_MASK = ((1 << 52) - 1) & ~(PAGE_SIZE - 1)
#: Bits of section_mem_map that are flags, not address (SECTION_MAP_LAST_BIT <= 6).
SECTION_MAP_FLAG_MASK = 0x3F
#: Translations cached before the cache is dropped (bounds memory).
_TLB_LIMIT = 1 << 16
_LEVEL_NAMES_5 = ("PGD", "P4D", "PUD", "PMD", "PTE")
_LEVEL_NAMES_4 = ("PGD", "PUD", "PMD", "PTE")


__all__ = [
    "DEFAULT_KERNEL_IMAGE_SIZE",
    "KERNEL_SPACE_START",
    "KERNEL_SPACE_START_L5",
    "PAGE_OFFSET_L4",
    "PAGE_OFFSET_L5",
    "START_KERNEL_MAP",
    "VMEMMAP_START_L4",
    "VMEMMAP_START_L5",
    "TranslationError",
    "X86_64AddressSpace",
    "address_space",
]


class X86_64AddressSpace(KernelAddressSpace):
    """The kernel's virtual address space of an x86_64 dump."""

    def __init__(self, dump: Dump) -> None:
        info = dump.vmcoreinfo
        if info is None:
            raise DumpError(
                f"{dump.name}: the dump has no VMCOREINFO note, so kernel virtual addresses "
                "cannot be translated (QEMU dumps need -device vmcoreinfo)"
            )
        machine = dump.header.machine
        if machine not in ("x86_64", "", None):
            raise DumpError(f"{dump.name}: a {machine} dump; only x86_64 kernels are supported")
        self.dump = dump
        self.info: VmcoreInfo = info
        self.kaslr_offset: int = info.kerneloffset or 0
        phys_base = info.phys_base
        if phys_base is None:  # NUMBER(phys_base) is Linux 4.10+
            phys_base = phys_base_from_headers(dump)
        self.phys_base: int = phys_base or 0
        self.pgtable_l5: bool = bool(info.number("pgtable_l5_enabled"))
        self.sme_mask: int = info.number("sme_mask") or 0
        self._entry_mask = PTE_PFN_MASK & ~self.sme_mask
        self.kernel_image_size: int = info.number("KERNEL_IMAGE_SIZE") or DEFAULT_KERNEL_IMAGE_SIZE
        self.max_physmem_bits: int = info.number("MAX_PHYSMEM_BITS") or (
            52 if self.pgtable_l5 else 46
        )
        # Linux 4.13 renamed init_level4_pgt to init_top_pgt (5-level paging work).
        root = (
            info.symbol("init_top_pgt")
            or info.symbol("init_level4_pgt")
            or info.symbol("swapper_pg_dir")
        )
        if root is None:
            raise DumpError(f"{dump.name}: VMCOREINFO has no SYMBOL(init_top_pgt): no page tables")
        self.pgd_vaddr = root
        self.pgd_paddr = self._text_v2p(root)
        self._levels = 5 if self.pgtable_l5 else 4
        self._tlb: dict[int, int] = {}
        self._table_cache: dict[int, tuple[int, ...]] = {}
        self._page_offset_base: int | None = None
        self._vmemmap_base: int | None = None
        self._vmemmap_looked_up = False
        self.page_offset_source = ""

    #: phys_base from the headers (kernels before 4.10 lack NUMBER(phys_base))
    _phys_base_from_headers = staticmethod(phys_base_from_headers)

    # --- region bases -------------------------------------------------------------------

    @property
    def page_offset_base(self) -> int:
        """Start of the direct map of physical memory (randomized under KASLR)."""
        if self._page_offset_base is None:
            self._page_offset_base = self._find_page_offset_base()
        return self._page_offset_base

    @property
    def vmemmap_base(self) -> int | None:
        """Virtual address of ``struct page`` of pfn 0, or None if it cannot be found."""
        if not self._vmemmap_looked_up:
            self._vmemmap_base = self._find_vmemmap_base()
            self._vmemmap_looked_up = True
        return self._vmemmap_base

    def _find_page_offset_base(self) -> int:
        for source, finder in (
            ("ELF PT_LOAD", self._page_offset_from_elf),
            ("kallsyms", lambda: self._read_kernel_variable("page_offset_base")),
            ("page tables", self._page_offset_from_page_tables),
        ):
            try:
                value = finder()
            except DumpError:
                value = None
            if value is not None:
                self.page_offset_source = source
                return value
        raise DumpError(f"{self.dump.name}: cannot find the direct map (page_offset_base)")

    def _page_offset_from_elf(self) -> int | None:
        segments = getattr(self.dump, "segments", None)
        if not segments:
            return None
        lowest_vaddr = PAGE_OFFSET_L5 if self.pgtable_l5 else PAGE_OFFSET_L4
        deltas = {
            (seg.vaddr - seg.paddr) & (2**64 - 1)
            for seg in segments
            if lowest_vaddr <= seg.vaddr < START_KERNEL_MAP
        }
        if len(deltas) != 1:
            return None  # makedumpfile -E and QEMU dumps may set p_vaddr differently
        return deltas.pop()

    def _page_offset_from_page_tables(self) -> int | None:
        # The direct map is the lowest mapping of the kernel half; its first leaf maps
        # the lowest RAM, so vaddr - paddr of that leaf is page_offset_base.
        first_kernel_index = PTRS_PER_TABLE // 2
        shift = 48 if self.pgtable_l5 else 39
        va_bits = shift + 9
        pgd = self._table(self.pgd_paddr)
        for index in range(first_kernel_index, PTRS_PER_TABLE):
            if pgd[index] & _PRESENT:
                vaddr = _canonical(index << shift, va_bits)
                leaf = self._first_leaf(pgd[index], vaddr, shift, self._levels - 1)
                if leaf is not None:
                    return (leaf[0] - leaf[1]) & (2**64 - 1)
        return None

    def _first_leaf(
        self, entry: int, vaddr: int, shift: int, levels_below: int
    ) -> tuple[int, int] | None:
        """(vaddr, paddr) of the lowest leaf mapping under a present entry."""
        if levels_below == 0 or (entry & _PSE and shift in (30, 21)):
            return vaddr, entry & self._entry_mask & ~((1 << shift) - 1)
        table = self._table(entry & self._entry_mask)
        child_shift = shift - 9
        for index, child in enumerate(table):
            if child & _PRESENT:
                found = self._first_leaf(
                    child, vaddr + (index << child_shift), child_shift, levels_below - 1
                )
                if found is not None:
                    return found
        return None

    def _find_vmemmap_base(self) -> int | None:
        try:
            value = self._read_kernel_variable("vmemmap_base")
        except DumpError:
            value = None
        if value is not None:
            return value
        try:
            return self._vmemmap_from_mem_section()
        except DumpError:
            return None

    def _vmemmap_from_mem_section(self) -> int | None:
        info = self.info
        mem_section = info.symbol("mem_section")
        entry_size = info.size("mem_section")
        map_offset = info.offset("mem_section.section_mem_map") or 0
        roots = info.length("mem_section")
        if mem_section is None or not entry_size:
            return None
        # SPARSEMEM_EXTREME: SYMBOL(mem_section) is the root array of pointers to
        # PAGE_SIZE/SIZE(mem_section) sections each; otherwise the sections themselves,
        # whose first section_mem_map has SECTION_MARKED_PRESENT (bit 0) set.
        sections = mem_section
        (first,) = struct.unpack("<Q", self.read(mem_section, 8))
        if not first & 1 and roots:
            # The root array holds pointers to pages of sections; the first is enough.
            count = min(roots, PAGE_SIZE // 8)
            pointers = struct.unpack(f"<{count}Q", self.read(mem_section, count * 8))
            sections = next((p for p in pointers if p), 0)
            if not sections:
                return None
        count = PAGE_SIZE // entry_size
        data = self.read(sections, count * entry_size)
        for i in range(count):
            (value,) = struct.unpack_from("<Q", data, i * entry_size + map_offset)
            if value & 1 and value & ~SECTION_MAP_FLAG_MASK:  # SECTION_MARKED_PRESENT
                return value & ~SECTION_MAP_FLAG_MASK
        return None

    def _read_kernel_variable(self, name: str) -> int | None:
        """An unsigned long kernel variable found through the dump's kallsyms, if any."""
        try:
            from kdumpkit.kernel.kallsyms import kallsyms
        except ImportError:
            return None
        table = kallsyms(self.dump)
        if table is None:
            return None
        address = table.lookup(name)
        if address is None:
            return None
        return struct.unpack("<Q", self.dump.read(self._text_v2p(address), 8))[0]

    # --- translation --------------------------------------------------------------------

    def is_kernel_text(self, vaddr: int) -> bool:
        """Whether ``vaddr`` is in the kernel image mapping (``__START_KERNEL_map``)."""
        return START_KERNEL_MAP <= vaddr < START_KERNEL_MAP + self.kernel_image_size

    def _text_v2p(self, vaddr: int) -> int:
        return vaddr - START_KERNEL_MAP + self.phys_base

    def v2p(self, vaddr: int) -> int:
        """The physical address of kernel virtual address ``vaddr``."""
        if self.is_kernel_text(vaddr):
            return self._text_v2p(vaddr)
        page = vaddr >> PAGE_SHIFT
        cached = self._tlb.get(page)
        if cached is not None:
            return cached | (vaddr & (PAGE_SIZE - 1))
        if self._page_offset_base is not None or self._have_cheap_page_offset():
            offset = vaddr - self.page_offset_base
            if 0 <= offset < 1 << self.max_physmem_bits:
                return offset
        paddr = self.walk(vaddr)
        if len(self._tlb) >= _TLB_LIMIT:
            self._tlb.clear()
        self._tlb[page] = paddr & ~(PAGE_SIZE - 1)
        return paddr

    def _have_cheap_page_offset(self) -> bool:
        # Only the ELF lookup is free; the other finders themselves translate.
        value = self._page_offset_from_elf()
        if value is not None:
            self._page_offset_base = value
            self.page_offset_source = "ELF PT_LOAD"
        return value is not None

    def p2v(self, paddr: int) -> int:
        """The direct-map virtual address of physical address ``paddr``."""
        return self.page_offset_base + paddr

    def walk(self, vaddr: int) -> int:
        """Translate ``vaddr`` by walking the page tables (no fast paths)."""
        if not 0 <= vaddr < 2**64:
            raise TranslationError(vaddr & (2**64 - 1), "not a 64-bit address")
        va_bits = 57 if self.pgtable_l5 else 48
        if _canonical(vaddr & ((1 << va_bits) - 1), va_bits) != vaddr:
            raise TranslationError(vaddr, f"not canonical for {va_bits}-bit virtual addresses")
        names = _LEVEL_NAMES_5 if self.pgtable_l5 else _LEVEL_NAMES_4
        table_paddr = self.pgd_paddr
        shift = 48 if self.pgtable_l5 else 39
        for level, name in enumerate(names):
            index = (vaddr >> shift) & (PTRS_PER_TABLE - 1)
            try:
                entry = self._table(table_paddr)[index]
            except PageNotPresentError as exc:
                raise TranslationError(
                    vaddr, f"{name} table at physical {table_paddr:#x} is {exc.reason} in the dump"
                ) from None
            if not entry & _PRESENT:
                raise TranslationError(vaddr, f"{name} entry {index} is not present")
            address = entry & self._entry_mask
            last = level == len(names) - 1
            if last or (entry & _PSE and name in ("PUD", "PMD")):
                page_mask = (1 << shift) - 1
                return (address & ~page_mask) | (vaddr & page_mask)
            table_paddr = address
            shift -= 9
        raise AssertionError("unreachable")

    def _table(self, paddr: int) -> tuple[int, ...]:
        table = self._table_cache.get(paddr)
        if table is None:
            data = self.dump.read_page(paddr >> PAGE_SHIFT)
            table = struct.unpack("<512Q", data[:PAGE_SIZE])
            if len(self._table_cache) >= 4096:
                self._table_cache.clear()
            self._table_cache[paddr] = table
        return table


def _canonical(vaddr: int, va_bits: int = 48) -> int:
    """Sign-extend a ``va_bits``-bit address to 64 bits."""
    if vaddr & (1 << (va_bits - 1)):
        return vaddr | ((2**64 - 1) & ~((1 << va_bits) - 1))
    return vaddr


_spaces: weakref.WeakKeyDictionary[Dump, X86_64AddressSpace] = weakref.WeakKeyDictionary()


def address_space(dump: Dump) -> X86_64AddressSpace:
    """The kernel address space of ``dump``, created once per dump object."""
    space = _spaces.get(dump)
    if space is None:
        space = X86_64AddressSpace(dump)
        _spaces[dump] = space
    return space
