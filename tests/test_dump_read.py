"""Readers on the real fixture: vmcore.elf (the raw /proc/vmcore), vmcore.kdump and
vmcore.flat (makedumpfile 1.7.2) must give the same pages, notes and facts."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from oracles import built_folder

from kdumpkit.dump import PageNotPresentError, PageState, open_dump
from kdumpkit.dump.flat import FlatSource, reassemble
from kdumpkit.dump.kdump import KdumpDump
from kdumpkit.dump.source import FileSource


def _digest_pages(pages) -> dict[int, bytes]:  # type: ignore[no-untyped-def]
    return {pfn: hashlib.blake2b(data, digest_size=16).digest() for pfn, data in pages}


@pytest.fixture(scope="module")
def kdump_pages(kdump61: Path) -> dict[int, bytes]:
    with open_dump(kdump61) as dump:
        return _digest_pages(dump.iter_pages())


def _dumpinfo(fx61: Path) -> str:
    return (fx61 / "dumpinfo-kdump.txt").read_text()


def test_kdump_header_matches_dumpinfo(fx61: Path, kdump61: Path) -> None:
    text = _dumpinfo(fx61)
    with open_dump(kdump61) as dump:
        extra = dump.header.extra
        assert f"header_version={extra['header_version']}" in text
        assert f"block_size={dump.page_size}" in text
        assert f"sub_hdr_size={extra['sub_hdr_size']} " in text
        assert f"bitmap_blocks={extra['bitmap_blocks']} " in text
        assert f"max_mapnr={dump.max_pfn} " in text
        assert f"max_mapnr_64={dump.max_pfn:#x}" in text
        assert f"nr_cpus={extra['nr_cpus']} " in text
        assert f"phys_base={extra['phys_base']:#x} " in text
        assert f"dump_level={dump.header.dump_level} " in text
        assert f"timestamp={dump.header.timestamp}.000000" in text
        utsname = re.search(r"utsname: \[(.*)\]", text)
        assert utsname is not None
        assert list(dump.header.utsname.values()) == re.findall(r"'([^']*)'", utsname.group(1))
        assert dump.header.compression == "zlib"
        assert not dump.header.incomplete
        assert len(dump.prstatus) == extra["nr_cpus"]


def test_vmcoreinfo_matches_text(fx61: Path, kdump61: Path, flat61: Path, elf61: Path) -> None:
    expected = (fx61 / "vmcoreinfo.txt").read_text()
    for path in (kdump61, flat61, elf61):
        with open_dump(path) as dump:
            assert dump.vmcoreinfo is not None
            assert dump.vmcoreinfo.text.strip() == expected.strip(), path


def test_notes_same_in_every_format(kdump61: Path, flat61: Path, elf61: Path) -> None:
    with open_dump(elf61) as elf, open_dump(kdump61) as kd, open_dump(flat61) as fl:
        as_tuples = [[(n.name, n.type, n.desc) for n in d.notes] for d in (elf, kd, fl)]
        assert as_tuples[0] == as_tuples[1] == as_tuples[2]
        assert [p.registers for p in elf.prstatus] == [p.registers for p in kd.prstatus]


def test_kdump_pages_equal_elf_pages(
    kdump61: Path, elf61: Path, kdump_pages: dict[int, bytes]
) -> None:
    with open_dump(elf61) as elf, open_dump(kdump61) as kd:
        present = kd.present_bitmap()
        assert len(kdump_pages) == int(present.sum()) > 10000
        # Every page the kdump has is RAM in the ELF, with the same bytes.
        assert not (present & ~elf.present_bitmap()).any()
        assert _digest_pages(elf.iter_pages(present)) == kdump_pages
        # RAM is the same; what makedumpfile filtered out is EXCLUDED, not a HOLE.
        assert np.array_equal(kd.ram_bitmap(), elf.ram_bitmap())
        excluded = np.flatnonzero(kd.ram_bitmap() & ~present)
        for pfn in excluded[:: max(1, len(excluded) // 200)].tolist():
            assert kd.page_state(pfn) == PageState.EXCLUDED
            with pytest.raises(PageNotPresentError, match="excluded"):
                kd.read_page(pfn)
        holes = np.flatnonzero(~kd.ram_bitmap())
        assert kd.page_state(int(holes[0])) == PageState.HOLE
        assert kd.page_state(kd.max_pfn + 5) == PageState.HOLE


def test_flat_pages_equal_kdump_pages(flat61: Path, kdump_pages: dict[int, bytes]) -> None:
    with open_dump(flat61) as fl:
        assert fl.header.extra["flattened"]
        assert _digest_pages(fl.iter_pages()) == kdump_pages


def test_random_reads_agree(kdump61: Path, flat61: Path, elf61: Path) -> None:
    rng = np.random.default_rng(61)
    with open_dump(elf61) as elf, open_dump(kdump61) as kd, open_dump(flat61) as fl:
        pfns = np.flatnonzero(kd.present_bitmap())
        for pfn in rng.choice(pfns, 300).tolist():
            offset = int(rng.integers(0, 4096))
            size = int(rng.integers(1, 6000))
            paddr = pfn * 4096 + offset
            try:
                expected = kd.read(paddr, size)
            except PageNotPresentError:
                continue  # the read crossed into an excluded page
            assert elf.read(paddr, size) == expected
            assert fl.read(paddr, size) == expected
            for dump in (elf, kd):  # ELF reads straight into the buffer; kdump through read
                buf = bytearray(size)
                dump.read_into(paddr, memoryview(buf))
                assert buf == expected


def test_read_page_and_iter_pages_agree(kdump61: Path, kdump_pages: dict[int, bytes]) -> None:
    with open_dump(kdump61) as kd:
        for pfn in list(kdump_pages)[::97]:
            assert hashlib.blake2b(kd.read_page(pfn), digest_size=16).digest() == kdump_pages[pfn]


def test_flat_source_serves_the_reassembled_file(flat61: Path, kdump61: Path) -> None:
    flat = FlatSource(FileSource(flat61))
    try:
        data = kdump61.read_bytes()
        assert flat.size == len(data)
        rng = np.random.default_rng(1)
        for _ in range(300):
            off = int(rng.integers(0, len(data)))
            size = int(rng.integers(0, 200000))
            size = min(size, len(data) - off)
            assert flat.pread(off, size) == data[off : off + size]
    finally:
        flat.close()


def test_reassemble_equals_makedumpfile_output(flat61: Path, kdump61: Path, tmp_path: Path) -> None:
    out = tmp_path / "re.kdump"
    size = reassemble(flat61, out)
    assert size == kdump61.stat().st_size
    assert out.read_bytes() == kdump61.read_bytes()


def test_kdump_dump_takes_a_source_list(kdump61: Path) -> None:
    dump = KdumpDump([FileSource(kdump61)])
    with dump:
        assert dump.format == "kdump"
        assert dump.count_present() > 0


@pytest.mark.parametrize("series", ["6.1", "6.12", "7.3"])
def test_qemu_dumps_agree(series: str) -> None:
    # QEMU's dump-guest-memory in its three forms (the testbed's dumps of each kernel).
    names = ("vmcore.qemu.kdump", "vmcore.qemu.flat", "vmcore.qemu.elf")
    folder = built_folder(series, "qemu-fwcfg", *names)
    forms = [folder / n for n in names]
    with open_dump(forms[0]) as kd, open_dump(forms[1]) as fl, open_dump(forms[2]) as elf:
        assert kd.header.extra["qemu"] and kd.header.utsname["release"] == ""
        assert kd.header.machine == "x86_64" and kd.vmcoreinfo is not None
        assert [n.name for n in kd.notes].count("QEMU") == len(kd.prstatus) > 0
        assert np.array_equal(kd.present_bitmap(), fl.present_bitmap())
        assert np.array_equal(kd.present_bitmap(), elf.present_bitmap()[: kd.max_pfn])
        pfns = np.flatnonzero(kd.present_bitmap())
        for pfn in pfns[:: max(1, len(pfns) // 2000)].tolist():
            page = kd.read_page(pfn)
            assert fl.read_page(pfn) == page and elf.read_page(pfn) == page


def test_packed_bitmap_matches_bool_arrays() -> None:
    from kdumpkit.dump import base
    from kdumpkit.dump.base import Bitmap, bitmap_runs

    rng = np.random.default_rng(7)
    for _ in range(200):
        size = int(rng.integers(1, 400))
        ref = rng.random(size) < 0.6
        bits = Bitmap.from_bool(ref)
        assert np.array_equal(bits.to_bool(), ref) and bits.count() == ref.sum()
        lo = int(rng.integers(0, size))
        hi = int(rng.integers(lo, size + 9))
        assert np.array_equal(bits.window(lo, hi), ref[lo:hi])
        assert bits.count(lo, hi) == ref[lo:hi].sum()
        value = bool(rng.integers(0, 2))
        bits.fill(lo, hi, value)
        ref[lo:hi] = value
        assert np.array_equal(bits.to_bool(), ref)
        at = int(rng.integers(0, size)) & ~7
        new = rng.random(int(rng.integers(0, size - at + 1))) < 0.5
        bits.set_window(at, new)
        ref[at : at + len(new)] = new
        assert np.array_equal(bits.to_bool(), ref)
        assert np.array_equal(Bitmap.from_runs(size, bitmap_runs(ref)).to_bool(), ref)
    # Runs come a window at a time: pieces meet at window boundaries.
    ref = np.ones(3 * base.BITMAP_WINDOW + 5, dtype=bool)
    ref[10] = False
    pieces = list(Bitmap.from_bool(ref).runs())
    assert pieces[0] == (0, 10) and pieces[-1][1] == ref.size
    assert sum(b - a for a, b in pieces) == ref.sum()


def test_elf_packed_bitmaps_match_the_bool_ones(elf61: Path, kdump61: Path) -> None:
    from kdumpkit.dump.base import Bitmap

    with open_dump(elf61) as elf, open_dump(kdump61) as kd:
        assert np.array_equal(elf.present_bits().to_bool(), elf.present_bitmap())
        assert np.array_equal(elf.ram_bits().to_bool(), elf.ram_bitmap())
        keep = Bitmap.from_bool(np.pad(kd.present_bitmap(), (0, elf.max_pfn - kd.max_pfn)))
        chunks = list(elf.iter_kept_chunks(keep))
        pfns = np.concatenate([p for p, _ in chunks])
        assert np.array_equal(pfns, np.flatnonzero(kd.present_bitmap()))
        for chunk_pfns, data in chunks[:: max(1, len(chunks) // 20)]:
            for i, pfn in enumerate(chunk_pfns.tolist()):
                assert bytes(data[i * 4096 : (i + 1) * 4096]) == kd.read_page(pfn)
