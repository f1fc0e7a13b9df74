"""Page classification against makedumpfile 1.7.2 on the real 6.1 dump."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from oracles import built_folder

from kdumpkit.capture.filter import (
    FilterError,
    PageClass,
    PageRules,
    classify_struct_pages,
    exclude_unnecessary_pages,
)
from kdumpkit.dump.errors import DumpError
from kdumpkit.dump.open import open_dump
from kdumpkit.dump.vmcoreinfo import VmcoreInfo
from kdumpkit.kernel.memmap import MemMapError, PageLayout, SparseMem

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("KDUMPKIT_CACHE", ROOT / ".cache"))
_STAT_LABELS = {
    "Non-private cache pages": PageClass.CACHE,
    "Private cache pages": PageClass.CACHE_PRIVATE,
    "User process data pages": PageClass.USER,
    "Free pages": PageClass.FREE,
    "Hwpoison pages": PageClass.HWPOISON,
    "Offline pages": PageClass.OFFLINE,
}


def makedumpfile_reference(elf: Path, level: int) -> tuple[Path, dict[PageClass, int]]:
    """``makedumpfile -c -d LEVEL`` of the fixture (cached) and its per-class counts."""
    if shutil.which("makedumpfile") is None:
        pytest.skip("makedumpfile is not installed")
    out = CACHE / "capture" / f"mdf-d{level}-c.kdump"
    log = out.with_suffix(".stats")
    if not out.exists() or not log.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        run = subprocess.run(
            ["makedumpfile", "--show-stats", "-c", "-d", str(level), str(elf), str(tmp)],
            capture_output=True,
            text=True,
            check=True,
        )
        log.write_text(run.stdout + run.stderr)
        tmp.rename(out)
    counts = {}
    for label, page_class in _STAT_LABELS.items():
        match = re.search(rf"{label}\s*:\s*(0x[0-9a-f]+)", log.read_text())
        assert match, f"makedumpfile stats lack {label!r}"
        counts[page_class] = int(match.group(1), 16)
    return out, counts


def partial_last_pages(dump) -> set[int]:  # type: ignore[no-untyped-def]
    """pfns holding the unaligned end of a PT_LOAD: RAM for us, not for makedumpfile's
    2nd bitmap (it rounds a segment's end down)."""
    ps = dump.page_size
    return {(s.paddr + s.memsz) // ps for s in dump.segments if (s.paddr + s.memsz) % ps}


@pytest.mark.parametrize("level", [31, 1, 16, 2])
def test_keep_bitmap_equals_makedumpfile(elf61: Path, level: int) -> None:
    reference, counts = makedumpfile_reference(elf61, level)
    with open_dump(elf61) as dump, open_dump(reference) as theirs:
        result = exclude_unnecessary_pages(dump, level)
        their_keep = theirs.present_bitmap()
        assert len(their_keep) == len(result.keep)
        differences = set(np.flatnonzero(result.keep != their_keep).tolist())
        # The one known difference: the partial page at 0x9f000 (RAM up to 0x9fc00) is
        # kept by us and dropped by makedumpfile; nothing else differs.
        assert differences == partial_last_pages(dump) & set(np.flatnonzero(result.keep).tolist())
        assert differences == {0x9F}
        for page_class, n in counts.items():
            assert result.excluded.get(page_class, 0) == n, page_class
        assert result.ram_pages == int(np.count_nonzero(theirs.ram_bitmap()))


def test_window_size_does_not_change_the_result(elf61: Path) -> None:
    with open_dump(elf61) as dump:
        big = exclude_unnecessary_pages(dump, 31)
        small = exclude_unnecessary_pages(dump, 31, window=512)
        assert np.array_equal(big.keep, small.keep)
        assert big.excluded == small.excluded


def test_refiltering_keeps_excluded_pages_excluded(elf61: Path) -> None:
    reference, _ = makedumpfile_reference(elf61, 1)
    with open_dump(reference) as dump:
        result = exclude_unnecessary_pages(dump, 31)
        present = dump.present_bitmap()
        assert not np.any(result.keep & ~present)
    with open_dump(elf61) as raw:
        direct = exclude_unnecessary_pages(raw, 31)
        assert np.array_equal(result.keep, direct.keep & present)


def test_sections_and_struct_pages(elf61: Path) -> None:
    with open_dump(elf61) as dump:
        memmap = SparseMem(dump)
        assert memmap.extreme
        assert memmap.pages_per_section == 32768
        # 1 GiB of RAM: sections 0..7 (the last clipped at max_pfn).
        assert [s.nr for s in memmap.sections] == list(range(8))
        assert list(memmap.ranges()) == [(0, dump.max_pfn, memmap.sections[0].mem_map)]
        page = memmap.pfn_to_page(0x1000)
        assert page == memmap.sections[0].mem_map + 0x1000 * 64
        # A reserved page of RAM (the kernel text) has PG_reserved (bit 12 on 6.1).
        text_pfn = dump.segments[0].paddr // 4096
        flags = struct.unpack("<Q", memmap.read_struct_pages(memmap.pfn_to_page(text_pfn), 1)[:8])
        assert flags[0] & (1 << 12)


def test_bad_level_and_missing_vmcoreinfo_keys(elf61: Path) -> None:
    with open_dump(elf61) as dump:
        with pytest.raises(FilterError, match=r"outside 0\.\.31"):
            exclude_unnecessary_pages(dump, 32)
        text = dump.vmcoreinfo.text.replace("NUMBER(SECTION_SIZE_BITS)=27\n", "")
        dump.vmcoreinfo = VmcoreInfo.parse(text.encode())
        with pytest.raises(MemMapError, match="SECTION_SIZE_BITS"):
            exclude_unnecessary_pages(dump, 31)
        text = text.replace("NUMBER(PG_lru)=4\n", "")
        dump.vmcoreinfo = VmcoreInfo.parse(text.encode())
        with pytest.raises(FilterError, match=r"NUMBER\(PG_lru\)"):
            exclude_unnecessary_pages(dump, 31)


@pytest.mark.parametrize(
    ("replacements", "message"),
    [
        ({"SYMBOL(mem_section)=ffff8f0bfffd0000": "SYMBOL(mem_section)=ffffffffff000000"},
         "points at no section roots"),
        ({"SIZE(page)=64": "SIZE(page)=4000000"}, "not a plausible struct page size"),
        ({"OFFSET(page._mapcount)=48": "OFFSET(page._mapcount)=4000"}, "lies outside it"),
        ({"LENGTH(mem_section)=2048": "LENGTH(mem_section)=7"}, "fits neither"),
        ({"NUMBER(PG_lru)=4": "NUMBER(PG_lru)=200"}, "is not a page flag"),
        ({"NUMBER(PG_lru)=4": "NUMBER(PG_lru)=zz"}, "is not a number"),
        ({"LENGTH(zone.free_area)=11": "LENGTH(zone.free_area)=100000"}, "implausible"),
    ],
)  # fmt: skip
def test_corrupt_vmcoreinfo_is_one_clear_error(
    elf61: Path, replacements: dict[str, str], message: str
) -> None:
    with open_dump(elf61) as dump:
        text = dump.vmcoreinfo.text
        for old, new in replacements.items():
            assert old in text
            text = text.replace(old, new)
        dump.vmcoreinfo = VmcoreInfo.parse(text.encode())
        with pytest.raises(DumpError, match=message) as caught:
            exclude_unnecessary_pages(dump, 31)
        assert "\n" not in str(caught.value)


# --- rules of kernels newer than the fixture, on hand-made struct pages ----------------------

_LAYOUT = PageLayout(
    size=64, flags=0, mapping=24, mapcount=48, private=40, compound_head=8,
    order_offset=None, dtor_offset=None,
)  # fmt: skip


def _rules_6_12(**changes: int | None) -> PageRules:
    # Linux 6.12+: page types are a value in the top byte of page_type (= _mapcount).
    values: dict[str, int | None] = dict(
        pg_lru=4, pg_private=13, pg_swapcache=10, pg_swapbacked=19, pg_slab=None,
        pg_hwpoison=22, pg_head_mask=1 << 6, pg_hugetlb=None,
        buddy_value=0xF0 << 24 & 0xFFFFFFFF, slab_value=0xF5 << 24, hugetlb_value=0xF4 << 24,
        offline_value=0xF2 << 24, unaccepted_value=None, hugetlb_dtor=None, nr_orders=11,
    )  # fmt: skip
    values.update(changes)
    return PageRules(**values)  # type: ignore[arg-type]


def _pages(*fields: dict[str, int]) -> bytes:
    buf = bytearray(64 * (len(fields) + 1))
    offsets = {"flags": 0, "head": 8, "mapping": 24, "private": 40, "mapcount": 48}
    for i, page in enumerate(fields):
        for name, value in page.items():
            fmt = "<I" if name == "mapcount" else "<Q"
            struct.pack_into(fmt, buf, i * 64 + offsets[name], value)
    return bytes(buf)


def test_page_types_compare_as_whole_values() -> None:
    rules = _rules_6_12()
    pages = _pages(
        {"mapcount": rules.buddy_value or 0, "private": 2},  # free block of 4 pages
        {"mapcount": rules.slab_value or 0, "mapping": 1},  # slab: never anonymous
        {"mapcount": (rules.buddy_value or 0) | 1},  # not exactly buddy: kept
        {"mapcount": rules.offline_value or 0},
        {"flags": 1 << 22},  # hwpoison
        {"flags": 1 << 4, "mapping": 0xFFFF888000001000},  # page cache
        {"flags": 1 << 4 | 1 << 13},  # private cache
        {"mapping": 0xFFFF888000002001},  # anonymous
    )
    cls, order, evaluated = classify_struct_pages(pages, 0, 8, _LAYOUT, rules, 31)
    assert cls.tolist() == [
        PageClass.FREE, 0, 0, PageClass.OFFLINE, PageClass.HWPOISON,
        PageClass.CACHE, PageClass.CACHE_PRIVATE, PageClass.USER,
    ]  # fmt: skip
    assert order[0] == 2 and evaluated.all()
    cls17, _, _ = classify_struct_pages(pages, 0, 8, _LAYOUT, rules, 17)
    assert cls17.tolist() == [PageClass.FREE, 0, 0, PageClass.OFFLINE, PageClass.HWPOISON, 0, 0, 0]


def test_hugetlb_and_compound_orders() -> None:
    rules = _rules_6_12()
    head = {"flags": 1 << 6, "mapcount": rules.hugetlb_value or 0}
    first_tail = {"flags": 9, "head": 0xFFFFEA0000000001}  # folio order 9 in _flags_1
    pages = _pages(head, first_tail, {"head": 0xFFFFEA0000000001}, {})
    cls, order, evaluated = classify_struct_pages(pages, 512, 4, _LAYOUT, rules, 8)
    assert cls[0] == PageClass.USER and order[0] == 9
    assert evaluated.tolist() == [True, False, False, True]
    # A head at an unaligned pfn has an impossible order: only itself.
    cls, order, _ = classify_struct_pages(pages, 513, 4, _LAYOUT, rules, 8)
    assert cls[0] == PageClass.USER and order[0] == 0
    # Linux 6.6 - 6.8: hugetlb is a flag of the first tail page.
    rules_6_6 = _rules_6_12(hugetlb_value=None, pg_hugetlb=20)
    pages = _pages({"flags": 1 << 6}, {"flags": 9 | 1 << 20, "head": 1}, {})
    cls, order, _ = classify_struct_pages(pages, 0, 3, _LAYOUT, rules_6_6, 8)
    assert cls[0] == PageClass.USER and order[0] == 9


def test_linux_6_12_page_types_match_crash_kmem(tmp_path: Path) -> None:
    """On a 6.12 dump (page types in the top byte of page_type) our free and cache page
    counts are the kernel's own: crash 9.0.2's ``kmem -i`` (from vm_stat) says the same,
    once the per-cpu deltas not yet folded into vm_stat are added (crash leaves them out)."""
    from drgn.helpers.linux.cpumask import for_each_possible_cpu
    from drgn.helpers.linux.percpu import per_cpu_ptr

    from kdumpkit.analyze.program import open_program

    folder = built_folder("6.12", "qemu-fwcfg", "crash-9.0.2/vmcore.qemu.elf/kmem-i.txt")
    kmem = (folder / "crash-9.0.2" / "vmcore.qemu.elf" / "kmem-i.txt").read_text()
    expected = {
        name: int(re.search(rf"^\s*{name}\s+(\d+)", kmem, re.M).group(1))  # type: ignore[union-attr]
        for name in ("FREE", "CACHED")
    }
    prog = open_program(folder / "vmcore.qemu.elf")
    free = prog["NR_FREE_PAGES"].value_()
    zones = list(prog["node_data"][0].node_zones)
    assert sum(zone.vm_stat[free].counter.value_() for zone in zones) == expected["FREE"]
    unfolded = sum(
        per_cpu_ptr(zone.per_cpu_zonestats, cpu).vm_stat_diff[free].value_()
        for zone in zones
        for cpu in for_each_possible_cpu(prog)
    )
    with open_dump(folder / "vmcore.qemu.elf") as dump:
        assert dump.vmcoreinfo.number("PAGE_SLAB_MAPCOUNT_VALUE") is not None
        result = exclude_unnecessary_pages(dump, 31)
    assert result.excluded[PageClass.FREE] == expected["FREE"] + unfolded
    assert result.excluded[PageClass.CACHE] == expected["CACHED"]


def test_kept_sample_picks_as_flatnonzero_does(elf61: Path) -> None:
    # The packed keep bitmap gives the same spread of sample pfns as the bool array
    # (collect's size estimate), without an array of every kept pfn.
    with open_dump(elf61) as dump:
        result = exclude_unnecessary_pages(dump, 31)
    kept = np.flatnonzero(result.keep)
    assert result.kept_pages == kept.size > 0
    for count in (1, 512, kept.size + 10):
        expected = kept[np.linspace(0, kept.size - 1, min(count, kept.size)).astype(np.int64)]
        assert np.array_equal(result.kept_sample(count), expected)


def test_linux_7_3_compound_info_keeps_whole_compound_pages() -> None:
    """Debian's 7.3 exports the tail pages' head word as OFFSET(page.compound_info)
    (no page.compound_head).  makedumpfile 1.7.8 does not know it and judges each tail
    page alone: on the testbed kdump it drops hundreds of slab tail pages (the crashing task's
    task_struct among them: drgn then fails with 'Excluded page').  Ours keeps a tail
    page exactly when its head is kept, and a superset of makedumpfile's pages.
    (Here the word is no pointer but a mask, ``~(folio bytes of struct pages - 1) | 1``:
    only its tail bit is used.)"""
    folder = built_folder("7.3", "kdump-load", "vmcore.elf", "vmcore.mdf-1.7.8.kdump")
    with open_dump(folder / "vmcore.elf") as dump:
        assert dump.vmcoreinfo.offset("page.compound_head") is None
        memmap = SparseMem(dump)
        assert memmap.layout.compound_head == dump.vmcoreinfo.offset("page.compound_info") == 8
        keep = exclude_unnecessary_pages(dump, 31).keep
        tails = 0
        tail_pfns = []
        for start, end, mem_map in memmap.ranges():
            size = memmap.layout.size
            buf = memmap.read_struct_pages(mem_map, end - start)
            info = np.frombuffer(buf, dtype="<u8").reshape(-1, size // 8)[:, 1]
            tail = np.flatnonzero(info & 1)
            # With a power-of-2 struct page, 7.x stores a mask (head = page & mask: the
            # folio's size in struct-page bytes), not the head's address.
            mask = info[tail] & ~np.uint64(1)
            assert bool(((~mask + np.uint64(1)) & ~mask == 0).all())  # ~(2**k - 1) each
            addresses = np.uint64(mem_map) + tail.astype(np.uint64) * np.uint64(size)
            heads = ((addresses & mask) - np.uint64(mem_map)) // np.uint64(size)
            heads = heads.astype(np.int64)
            inside = (heads >= 0) & (heads < end - start)
            assert bool(inside.all())
            # Every tail page is kept exactly when its head page is.
            assert np.array_equal(keep[start + tail], keep[start + heads])
            tails += int(tail.size)
            tail_pfns.append(start + tail)
        assert tails > 1000
    with open_dump(folder / "vmcore.mdf-1.7.8.kdump") as theirs:
        kept_by_them = theirs.present_bitmap()
    n = min(keep.size, kept_by_them.size)
    assert not bool((kept_by_them[:n] & ~keep[:n]).any())
    # the pages only we keep are tail pages (their heads are kept: checked above)
    ours_only = np.flatnonzero(keep[:n] & ~kept_by_them[:n])
    assert ours_only.size > 0
    assert bool(np.isin(ours_only, np.concatenate(tail_pfns)).all())
