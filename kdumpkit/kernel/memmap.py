"""SPARSEMEM: where the ``struct page`` of every pfn lives, from VMCOREINFO alone.

The kernel keeps one ``struct mem_section`` per ``2**SECTION_SIZE_BITS`` bytes of
physical memory.  With SPARSEMEM_EXTREME, ``mem_section`` is a root array of
``LENGTH(mem_section)`` pointers, each to a page of ``PAGE_SIZE // SIZE(mem_section)``
sections; without it, a flat array of all ``2**(MAX_PHYSMEM_BITS - SECTION_SIZE_BITS)``
sections.  ``section_mem_map`` holds ``mem_map - section_start_pfn`` (so that
``pfn_to_page`` is one addition) with flag bits in its low bits.

With SPARSEMEM_VMEMMAP the struct pages of a section are virtually contiguous;
we translate them per page-table mapping (2 MiB or 4 KiB) and read each
physically contiguous piece with one call.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from kdumpkit.dump.base import Dump
from kdumpkit.dump.errors import DumpError, PageNotPresentError
from kdumpkit.kernel.x86_64 import X86_64AddressSpace
from kdumpkit.kernel.x86_64_layout import KERNEL_SPACE_START_L5

#: section_mem_map flag bits (include/linux/mmzone.h)
SECTION_MARKED_PRESENT = 1 << 0
SECTION_HAS_MEM_MAP = 1 << 1
#: Every flag lives below bit 6 (SECTION_MAP_LAST_BIT is at most 6); the encoded
#: mem_map is aligned far beyond that.
SECTION_MAP_FLAG_MASK = (1 << 6) - 1
U64 = (1 << 64) - 1
#: More sections than this (512 TiB of 128 MiB sections) is a corrupt VMCOREINFO.
MAX_SECTIONS = 1 << 22
#: Bounds of SIZE(page) on any kernel (56..80 bytes in practice).
MIN_PAGE_STRUCT = 16
MAX_PAGE_STRUCT = 1024
#: Section entries decoded per read.
_DECODE_BATCH = 4096
_PRESENT = 1
_PSE = 1 << 7
_PTE_ADDR = ((1 << 52) - 1) & ~0xFFF


class MemMapError(DumpError):
    """The dump's memory model cannot be decoded (VMCOREINFO missing or inconsistent)."""


@dataclass(frozen=True)
class PageLayout:
    """Offsets of the ``struct page`` fields that page classification reads.

    ``order_offset``/``dtor_offset`` are relative to the *head* page: the kernel
    keeps a compound page's order and destructor in its first tail page.
    ``None`` means the running kernel does not export the field.
    """

    size: int
    flags: int
    mapping: int
    mapcount: int | None
    private: int | None
    compound_head: int | None
    order_offset: int | None
    dtor_offset: int | None
    #: 1 (u8, Linux >= 4.16) or 2 (u16, 4.4 - 4.15)
    dtor_width: int = 1
    order_width: int = 1


def page_layout(dump: Dump) -> PageLayout:
    """The struct page layout named by the dump's VMCOREINFO."""
    info = _vmcoreinfo(dump)
    size = info.size("page")
    flags = info.offset("page.flags")
    mapping = info.offset("page.mapping")
    if not size or flags is None or mapping is None:
        raise MemMapError(
            f"{dump.name}: VMCOREINFO lacks SIZE(page), OFFSET(page.flags) or OFFSET(page.mapping)"
        )
    order = info.offset("page.compound_order")
    dtor = info.offset("page.compound_dtor")
    # Linux 6.3 moved both into struct folio (offsets from the folio, i.e. the head page);
    # before that they are struct page offsets inside the first tail page.
    if order is not None:
        order += size
    else:
        order = info.offset("folio._folio_order")
    if dtor is not None:
        dtor += size
    else:
        dtor = info.offset("folio._folio_dtor")
    width = 1
    if order is not None and dtor is not None and abs(order - dtor) == 2:
        width = 2  # Linux 4.4 - 4.15: unsigned short compound_dtor / compound_order
    if not MIN_PAGE_STRUCT <= size <= MAX_PAGE_STRUCT:
        raise MemMapError(f"{dump.name}: SIZE(page)={size} is not a plausible struct page size")
    fields = {
        "flags": (flags, 8),
        "mapping": (mapping, 8),
        "_mapcount": (info.offset("page._mapcount"), 4),
        "private": (info.offset("page.private"), 8),
        "compound_head": (_compound_head_offset(info), 8),
    }
    limits = {name: (off, n, size) for name, (off, n) in fields.items()}
    limits["compound order"] = (order, width, 2 * size)
    limits["compound dtor"] = (dtor, width, 2 * size)
    for name, (offset, width_bytes, limit) in limits.items():
        if offset is not None and offset + width_bytes > limit:
            raise MemMapError(f"{dump.name}: struct page field {name} at {offset} lies outside it")
    return PageLayout(
        size=size,
        flags=flags,
        mapping=mapping,
        mapcount=info.offset("page._mapcount"),
        private=info.offset("page.private"),
        compound_head=_compound_head_offset(info),
        order_offset=order,
        dtor_offset=dtor,
        dtor_width=width,
        order_width=width,
    )


def _compound_head_offset(info) -> int | None:  # type: ignore[no-untyped-def]
    # Linux 7.x exports the tail page's head word as page.compound_info; bit 0 still
    # marks a tail page, the rest is the head's address or (Debian's 7.3.4, 64-byte
    # struct page) a mask: head = page & ~(folio's struct-page bytes - 1).  Only the
    # tail bit is read here; makedumpfile 1.7.8 reads only page.compound_head.
    offset = info.offset("page.compound_head")
    return offset if offset is not None else info.offset("page.compound_info")


@dataclass(frozen=True)
class MemSection:
    """One present section: pfns ``[start_pfn, end_pfn)`` and their struct pages."""

    nr: int
    start_pfn: int
    end_pfn: int
    #: kernel virtual address of the struct page of ``start_pfn``
    mem_map: int


def _vmcoreinfo(dump: Dump):  # type: ignore[no-untyped-def]
    if dump.vmcoreinfo is None:
        raise MemMapError(f"{dump.name}: no VMCOREINFO: struct pages cannot be found")
    return dump.vmcoreinfo


class SparseMem:
    """The SPARSEMEM memory model of a dump: sections and their struct pages."""

    def __init__(self, dump: Dump) -> None:
        from kdumpkit.kernel.arch import address_space

        self.dump = dump
        info = _vmcoreinfo(dump)
        self.space = address_space(dump)
        self.layout = page_layout(dump)
        self.page_size = dump.page_size
        if info.page_size and info.page_size != self.page_size:
            # QEMU's kdump output of an arm64 guest: 64 KiB blocks for 4 KiB kernel pages.
            raise MemMapError(
                f"{dump.name}: the dump's {self.page_size}-byte pages are not the kernel's "
                f"{info.page_size}-byte pages: struct pages cannot be matched to them"
            )
        page_shift = self.page_size.bit_length() - 1
        section_bits = info.number("SECTION_SIZE_BITS")
        physmem_bits = info.number("MAX_PHYSMEM_BITS")
        root = info.symbol("mem_section")
        self.section_entry_size = info.size("mem_section") or 0
        self.map_offset = info.offset("mem_section.section_mem_map") or 0
        roots = info.length("mem_section")
        if root is None or section_bits is None or physmem_bits is None or not roots:
            raise MemMapError(
                f"{dump.name}: VMCOREINFO has no SPARSEMEM description (SYMBOL(mem_section), "
                "LENGTH(mem_section), NUMBER(SECTION_SIZE_BITS), NUMBER(MAX_PHYSMEM_BITS))"
            )
        if not 0 < self.section_entry_size <= self.page_size or not (
            page_shift < section_bits < physmem_bits <= 64
        ):
            raise MemMapError(
                f"{dump.name}: impossible SPARSEMEM numbers: SIZE(mem_section)="
                f"{self.section_entry_size}, SECTION_SIZE_BITS={section_bits}, "
                f"MAX_PHYSMEM_BITS={physmem_bits}"
            )
        self.pfn_section_shift = section_bits - page_shift
        self.pages_per_section = 1 << self.pfn_section_shift
        self.nr_mem_sections = 1 << (physmem_bits - section_bits)
        self.sections_per_root_extreme = self.page_size // self.section_entry_size
        if roots * self.sections_per_root_extreme == self.nr_mem_sections:
            self.extreme = True
        elif roots == self.nr_mem_sections:
            self.extreme = False
        else:
            raise MemMapError(
                f"{dump.name}: LENGTH(mem_section)={roots} fits neither SPARSEMEM_EXTREME nor "
                f"static SPARSEMEM ({self.nr_mem_sections} sections)"
            )
        self.nr_roots = roots
        self.mem_section = root
        self.sections: list[MemSection] = self._read_sections()
        self._leaf_cache: dict[int, tuple[int, int]] = {}

    # --- sections -----------------------------------------------------------------------

    def _read_sections(self) -> list[MemSection]:
        max_pfn = self.dump.max_pfn
        last_nr = min(self.nr_mem_sections, -(-max_pfn // self.pages_per_section))
        if last_nr > MAX_SECTIONS:
            raise MemMapError(
                f"{self.dump.name}: {last_nr} memory sections of 2^{self.pfn_section_shift} "
                "pages: SECTION_SIZE_BITS is implausibly small"
            )
        if self.extreme:
            roots = self._root_array(last_nr)
            found: list[MemSection] = []
            per_root = self.sections_per_root_extreme
            for root_nr, pointer in enumerate(roots):
                if not pointer or root_nr * per_root >= last_nr:
                    continue
                count = min(per_root, last_nr - root_nr * per_root)
                found += self._decode_sections(pointer, root_nr * per_root, count)
            return found
        return self._decode_sections(self.mem_section, 0, last_nr)

    def _root_array(self, last_nr: int) -> tuple[int, ...]:
        """The root pointers, accepting SYMBOL(mem_section) as the array or a pointer to it.

        Linux 4.15 made ``mem_section`` a pointer (``struct mem_section **``); since
        the fix that followed, VMCOREINFO exports the pointer's value, but kernels in
        between export the variable's address.  Whichever reading gives sections
        that decode is the right one, as makedumpfile decides too.
        """
        count = min(self.nr_roots, -(-last_nr // self.sections_per_root_extreme))
        candidates = [self.mem_section]
        try:
            candidates.append(self.space.read_u64(self.mem_section))
        except DumpError:
            pass
        for candidate in candidates:
            try:
                roots = struct.unpack(f"<{count}Q", self.space.read(candidate, count * 8))
            except DumpError:
                continue
            if any(roots) and all(not p or p >= KERNEL_SPACE_START_L5 for p in roots):
                first = next(p for p in roots if p)
                try:
                    if self._decode_sections(first, 0, self.sections_per_root_extreme):
                        return roots
                except DumpError:
                    continue
        raise MemMapError(f"{self.dump.name}: SYMBOL(mem_section) points at no section roots")

    def _decode_sections(self, address: int, first_nr: int, count: int) -> list[MemSection]:
        out: list[MemSection] = []
        size = self.section_entry_size
        for done in range(0, count, _DECODE_BATCH):
            batch = min(_DECODE_BATCH, count - done)
            out += self._decode_batch(address + done * size, first_nr + done, batch)
        return out

    def _decode_batch(self, address: int, first_nr: int, count: int) -> list[MemSection]:
        size = self.section_entry_size
        data = self.space.read(address, count * size, zero_missing=True)
        out: list[MemSection] = []
        for i in range(count):
            (value,) = struct.unpack_from("<Q", data, i * size + self.map_offset)
            if not value & SECTION_HAS_MEM_MAP or not value & ~SECTION_MAP_FLAG_MASK:
                continue
            nr = first_nr + i
            start_pfn = nr << self.pfn_section_shift
            mem_map = ((value & ~SECTION_MAP_FLAG_MASK) + start_pfn * self.layout.size) & U64
            end_pfn = min(start_pfn + self.pages_per_section, self.dump.max_pfn)
            out.append(MemSection(nr, start_pfn, end_pfn, mem_map))
        return out

    def present_section_bitmap(self) -> np.ndarray:
        """A bool array of length ``max_pfn``: True where the pfn's section has a mem_map."""
        bits = np.zeros(self.dump.max_pfn, dtype=bool)
        for section in self.sections:
            bits[section.start_pfn : section.end_pfn] = True
        return bits

    def ranges(self) -> Iterator[tuple[int, int, int]]:
        """``(start_pfn, end_pfn, mem_map)`` of runs of sections with contiguous struct pages."""
        run: list[int] | None = None
        for s in self.sections:
            if (
                run is not None
                and run[1] == s.start_pfn
                and (run[2] + (s.start_pfn - run[0]) * self.layout.size == s.mem_map)
            ):
                run[1] = s.end_pfn
                continue
            if run is not None:
                yield run[0], run[1], run[2]
            run = [s.start_pfn, s.end_pfn, s.mem_map]
        if run is not None:
            yield run[0], run[1], run[2]

    def pfn_to_page(self, pfn: int) -> int | None:
        """The virtual address of ``struct page`` of ``pfn``, or None if its section has none."""
        nr = pfn >> self.pfn_section_shift
        for s in self.sections:
            if s.nr == nr:
                return s.mem_map + (pfn - s.start_pfn) * self.layout.size
        return None

    # --- reading struct pages -------------------------------------------------------------

    def read_struct_pages(self, mem_map: int, count: int, *, pad: int = 0) -> bytearray:
        """``count`` struct pages starting at virtual address ``mem_map``, read in bulk,
        followed by ``pad`` zero struct pages.

        Pieces that do not translate or are missing from the dump read as zeros
        (a zero struct page is classified as an ordinary kept page).
        """
        size = self.layout.size
        return self.read_virtual(mem_map, count * size, extra=pad * size)

    def read_virtual(self, vaddr: int, size: int, *, extra: int = 0) -> bytearray:
        """Kernel virtual memory, translated per page-table mapping; unreadable parts zero.

        ``extra`` zero bytes follow (room a caller wants without another copy).
        """
        out = bytearray(size + extra)
        view = memoryview(out)
        pos = 0
        while pos < size:
            addr = vaddr + pos
            try:
                paddr, leaf_size = self._leaf(addr)
            except DumpError:
                leaf_size = 4096
                paddr = None
            chunk = min(leaf_size - (addr & (leaf_size - 1)), size - pos)
            if paddr is not None:
                try:
                    self.dump.read_into(paddr, view[pos : pos + chunk], zero_missing=True)
                except PageNotPresentError:
                    pass
            pos += chunk
        view.release()  # callers may resize ``out``
        return out

    def _leaf(self, vaddr: int) -> tuple[int, int]:
        """(physical address of ``vaddr``, size of the mapping that holds it)."""
        space = self.space
        arch_leaf = getattr(space, "leaf", None)
        if arch_leaf is not None:  # arm64: granule and block sizes of its own
            try:
                return arch_leaf(vaddr)
            except DumpError as exc:
                raise MemMapError(str(exc)) from None
        if not isinstance(space, X86_64AddressSpace):
            raise MemMapError(f"no page-table walk for a {type(space).__name__}")
        if space.is_kernel_text(vaddr):
            return space.v2p(vaddr), 4096
        key = vaddr >> 21
        cached = self._leaf_cache.get(key)
        if cached is not None and cached[1] == 1 << 21:
            return cached[0] | (vaddr & ((1 << 21) - 1)), 1 << 21
        levels = 5 if space.pgtable_l5 else 4
        shift = 48 if space.pgtable_l5 else 39
        entry_mask = _PTE_ADDR & ~space.sme_mask
        table = space.pgd_paddr
        for level in range(levels):
            index = (vaddr >> shift) & 511
            (entry,) = struct.unpack("<Q", self.dump.read(table + index * 8, 8))
            if not entry & _PRESENT:
                raise MemMapError(f"virtual address {vaddr:#x} is not mapped")
            address = entry & entry_mask
            if level == levels - 1 or (entry & _PSE and shift in (30, 21)):
                leaf = 1 << shift
                base = address & ~(leaf - 1)
                if leaf == 1 << 21:
                    if len(self._leaf_cache) > 1 << 16:
                        self._leaf_cache.clear()
                    self._leaf_cache[key] = (base, leaf)
                return base | (vaddr & (leaf - 1)), leaf
            table = address
            shift -= 9
        raise AssertionError("unreachable")
