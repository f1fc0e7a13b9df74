"""The page-table walk on synthetic memory: 4 and 5 levels, 1 GiB / 2 MiB / 4 KiB pages,
the SME bit stripped, and the page_offset_base fallback."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from kdumpkit.dump.base import Dump, DumpHeader, PageState
from kdumpkit.dump.vmcoreinfo import VmcoreInfo
from kdumpkit.kernel.x86_64 import START_KERNEL_MAP, TranslationError, X86_64AddressSpace

SME = 1 << 47
PRESENT_RW = 0x3
PSE = 0x80
MAX_PFN = 0x50000


class MemDump(Dump):
    """Physical memory as a dict of pages."""

    def __init__(self, vmcoreinfo: str) -> None:
        self.name = "synthetic"
        self.header = DumpHeader(format="mem", max_pfn=MAX_PFN)
        self.notes, self.note_data, self.prstatus = [], b"", []
        self.vmcoreinfo = VmcoreInfo.parse(vmcoreinfo.encode())
        self.pages: dict[int, bytearray] = {}

    def poke(self, paddr: int, data: bytes) -> None:
        pfn, off = divmod(paddr, 4096)
        self.pages.setdefault(pfn, bytearray(4096))[off : off + len(data)] = data

    def set_entry(self, table_pfn: int, index: int, value: int) -> None:
        self.poke(table_pfn * 4096 + index * 8, struct.pack("<Q", value | SME))

    def page_state(self, pfn: int) -> PageState:
        return PageState.PRESENT if pfn in self.pages else PageState.EXCLUDED

    def _read_present_page(self, pfn: int) -> bytes:
        return bytes(self.pages[pfn])

    def present_bitmap(self) -> np.ndarray:
        bits = np.zeros(MAX_PFN, dtype=bool)
        bits[list(self.pages)] = True
        return bits


def _indexes(vaddr: int, levels: int) -> list[int]:
    shifts = [48, 39, 30, 21, 12][5 - levels :]
    return [(vaddr >> s) & 511 for s in shifts]


def _build(levels: int) -> tuple[MemDump, dict[str, tuple[int, int]]]:
    pgd_pfn = 1
    # init_top_pgt at text address T maps to T - __START_KERNEL_map + phys_base = pfn 1.
    phys_base = -0x1000000
    pgd_vaddr = START_KERNEL_MAP + 0x1000000 + pgd_pfn * 4096
    info = (
        f"SYMBOL(init_top_pgt)={pgd_vaddr:x}\nNUMBER(phys_base)={phys_base}\n"
        f"NUMBER(pgtable_l5_enabled)={int(levels == 5)}\nNUMBER(sme_mask)={SME}\n"
        "KERNELOFFSET=0\nNUMBER(KERNEL_IMAGE_SIZE)=1073741824\n"
    )
    dump = MemDump(info)
    dump.poke(pgd_pfn * 4096, bytes(4096))
    page_offset = 0xFF11000000000000 if levels == 5 else 0xFFFF888000000000
    next_pfn = iter(range(2, 100))
    expected: dict[str, tuple[int, int]] = {}

    def map_page(vaddr: int, paddr: int, leaf_level: int) -> None:
        table = pgd_pfn
        idx = _indexes(vaddr, levels)
        for index in idx[:leaf_level]:
            child = _child(dump, table, index)
            if child is None:
                child = next(next_pfn)
                dump.poke(child * 4096, bytes(4096))
                dump.set_entry(table, index, child * 4096 | PRESENT_RW)
            table = child
        flags = PRESENT_RW | (PSE if leaf_level < levels - 1 else 0)
        dump.set_entry(table, idx[leaf_level], paddr | flags)

    # The direct map: a 1 GiB page for physical 0, so page_offset_base is found by the walk.
    map_page(page_offset, 0, levels - 3)
    expected["1G"] = (page_offset + 0x3456789, 0x3456789)
    two_m = 0xFFFFC90000000000 + (5 << 21)
    map_page(two_m, 0x40000000, levels - 2)
    expected["2M"] = (two_m + 0x1ABCD, 0x40000000 + 0x1ABCD)
    four_k = 0xFFFFC90000000000 + (7 << 30) + (3 << 12)
    map_page(four_k, 0x4000F000, levels - 1)
    expected["4K"] = (four_k + 0x123, 0x4000F123)
    for _, paddr in expected.values():
        dump.poke(paddr, b"HELLO%d" % (paddr & 0xFF))
    return dump, expected


def _child(dump: MemDump, table: int, index: int) -> int | None:
    page = dump.pages.get(table)
    (entry,) = struct.unpack_from("<Q", page, index * 8)
    return (entry & ~SME & ((1 << 52) - 1)) >> 12 if entry & 1 else None


@pytest.mark.parametrize("levels", [4, 5])
def test_walk_all_page_sizes(levels: int) -> None:
    dump, expected = _build(levels)
    space = X86_64AddressSpace(dump)
    assert space.pgtable_l5 is (levels == 5) and space.phys_base == -0x1000000
    for size, (vaddr, paddr) in expected.items():
        assert space.walk(vaddr) == paddr, size
        assert space.v2p(vaddr) == paddr, size
        marker = b"HELLO%d" % (paddr & 0xFF)
        assert space.read(vaddr, len(marker)) == marker
    page_offset = 0xFF11000000000000 if levels == 5 else 0xFFFF888000000000
    assert space.page_offset_base == page_offset
    assert space.page_offset_source == "page tables"
    assert space.v2p(page_offset + 0x1000) == 0x1000


@pytest.mark.parametrize("levels", [4, 5])
def test_missing_entries_and_tables(levels: int) -> None:
    dump, expected = _build(levels)
    space = X86_64AddressSpace(dump)
    vaddr = expected["4K"][0] + 0x1000  # the next PTE is empty
    with pytest.raises(TranslationError, match=r"PTE entry \d+ is not present"):
        space.walk(vaddr)
    # Drop the table the 2 MiB page hangs off: its page is excluded from the dump.
    two_m = expected["2M"][0]
    pmd_table = _walk_tables(dump, two_m, levels)[-1]
    del dump.pages[pmd_table]
    with pytest.raises(
        TranslationError, match=r"PMD table at physical 0x[0-9a-f]+ is excluded"
    ) as exc:
        X86_64AddressSpace(dump).walk(two_m)
    assert f"{two_m:#x}" in str(exc.value)


def _walk_tables(dump: MemDump, vaddr: int, levels: int) -> list[int]:
    tables = [1]
    for index in _indexes(vaddr, levels)[: levels - 2]:
        tables.append(_child(dump, tables[-1], index))
    return tables
