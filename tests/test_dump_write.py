"""Writers on the real fixture: round trips keep every page, our kdump output is the
same bytes makedumpfile wrote, and makedumpfile itself accepts what we write."""

from __future__ import annotations

import errno
import hashlib
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from oracles import crash_9, makedumpfile_178

from kdumpkit.dump import PageState, open_dump
from kdumpkit.dump.compress import CODECS
from kdumpkit.dump.errors import DumpError
from kdumpkit.dump.write_pages import zero_mask
from kdumpkit.dump.write_sink import FileSink
from kdumpkit.dump.writer import split_ranges, write_dump, write_split

MAKEDUMPFILE = shutil.which("makedumpfile")
needs_makedumpfile = pytest.mark.skipif(MAKEDUMPFILE is None, reason="makedumpfile not installed")
#: Debian's makedumpfile 1.7.2 is built with zlib and lzo only.
MAKEDUMPFILE_CODECS = ("zlib", "lzo", "none")


def _digests(dump) -> dict[int, bytes]:  # type: ignore[no-untyped-def]
    return {pfn: hashlib.blake2b(d, digest_size=16).digest() for pfn, d in dump.iter_pages()}


@pytest.fixture(scope="module")
def reference(kdump61: Path) -> dict[int, bytes]:
    with open_dump(kdump61) as dump:
        return _digests(dump)


def test_kdump_output_is_makedumpfiles_bytes(
    kdump61: Path, tmp_path: Path, stdlib_zlib: None
) -> None:
    # Same source pages, zlib, one shared zero page: makedumpfile -c -d 31 wrote exactly this.
    out = tmp_path / "ours.kdump"
    with open_dump(kdump61) as src:
        stats = write_dump(src, out, compress="zlib", exclude_zero=True)
    assert out.read_bytes() == kdump61.read_bytes()
    assert stats.file_size == kdump61.stat().st_size
    with open_dump(kdump61) as src:
        assert stats.pages_written == src.count_present()
        assert stats.excluded_pages == src.excluded_count()
    assert stats.zero_pages > 0


def test_zlib_pages_deflated_by_libdeflate_inflate_with_zlib(
    kdump61: Path, reference: dict[int, bytes], tmp_path: Path
) -> None:
    """libdeflate's zlib streams (the default deflater) are zlib streams: zlib itself
    reads every page back; the file is about makedumpfile's size; the same bytes every
    time, threads or not."""

    from kdumpkit.dump import compress

    if compress._libdeflate() is None:
        pytest.skip("the deflate package is not installed: zlib pages are zlib's")
    out = tmp_path / "libdeflate.kdump"
    again = tmp_path / "again.kdump"
    with open_dump(kdump61) as src:
        write_dump(src, out, compress="zlib", exclude_zero=True)
        write_dump(src, again, compress="zlib", exclude_zero=True, threads=2)
    assert out.read_bytes() == again.read_bytes()
    assert 0.98 < out.stat().st_size / kdump61.stat().st_size < 1.05
    with open_dump(out) as ours:  # the reader inflates with zlib
        assert _digests(ours) == reference


def test_kdump_from_elf_is_makedumpfiles_bytes(
    kdump61: Path, elf61: Path, tmp_path: Path, stdlib_zlib: None
) -> None:
    # From the raw /proc/vmcore with makedumpfile's page selection and header facts.
    out = tmp_path / "ours.kdump"
    with open_dump(kdump61) as ref, open_dump(elf61) as src:
        write_dump(
            src, out, compress="zlib", keep=ref.present_bitmap(), exclude_zero=True,
            dump_level=31, utsname=ref.header.utsname,
        )  # fmt: skip
    assert out.read_bytes() == kdump61.read_bytes()


@pytest.mark.parametrize("threads", [2, 3])
def test_parallel_zlib_is_makedumpfiles_bytes(
    threads: int, kdump61: Path, elf61: Path, tmp_path: Path, stdlib_zlib: None
) -> None:
    # zlib in threads, pages read as views of the mapped ELF: same bytes.
    out = tmp_path / "ours.kdump"
    with open_dump(kdump61) as ref, open_dump(elf61) as src:
        write_dump(
            src, out, compress="zlib", keep=ref.present_bitmap(), exclude_zero=True,
            dump_level=31, utsname=ref.header.utsname, threads=threads,
        )  # fmt: skip
    assert out.read_bytes() == kdump61.read_bytes()


@pytest.mark.parametrize("codec", ["zstd", "lzo", "snappy", "none"])
def test_threads_do_not_change_the_output(codec: str, kdump61: Path, tmp_path: Path) -> None:
    outs = []
    for threads in (1, 2):
        out = tmp_path / f"ours.{threads}"
        with open_dump(kdump61) as src:
            write_dump(src, out, compress=codec, exclude_zero=True, threads=threads)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    with open_dump(tmp_path / "ours.2") as back, open_dump(kdump61) as ref:
        assert _digests(back) == _digests(ref)


@pytest.mark.parametrize("codec", list(CODECS))
def test_codec_round_trip(
    codec: str, kdump61: Path, reference: dict[int, bytes], tmp_path: Path
) -> None:
    out = tmp_path / f"ours.{codec}"
    with open_dump(kdump61) as src:
        stats = write_dump(src, out, compress=codec)
    with open_dump(out) as back:
        assert back.header.compression == (None if codec == "none" else codec)
        assert back.header.dump_level == 31
        assert _digests(back) == reference
    assert stats.pages_written == len(reference)


def test_elf_round_trip_keeps_pages_and_exclusions(
    kdump61: Path, reference: dict[int, bytes], tmp_path: Path
) -> None:
    elf_out = tmp_path / "ours.elf"
    kdump_out = tmp_path / "back.kdump"
    with open_dump(kdump61) as src:
        write_dump(src, elf_out, fmt="elf")
        with open_dump(elf_out) as elf:
            assert elf.format == "elf"
            assert _digests(elf) == reference
            assert np.array_equal(elf.ram_bitmap(), src.ram_bitmap())
            for pfn in range(0, src.max_pfn, 101):
                assert elf.page_state(pfn) == src.page_state(pfn)
            assert elf.notes == src.notes
            write_dump(elf, kdump_out, compress="zstd")
    with open_dump(kdump_out) as back:
        assert _digests(back) == reference


def test_elf_exclude_zero_drops_zero_pages(
    kdump61: Path, reference: dict[int, bytes], tmp_path: Path
) -> None:
    out = tmp_path / "nozero.elf"
    zero = hashlib.blake2b(bytes(4096), digest_size=16).digest()
    with open_dump(kdump61) as src:
        stats = write_dump(src, out, fmt="elf", exclude_zero=True)
    expected = {p: h for p, h in reference.items() if h != zero}
    assert stats.zero_pages == len(reference) - len(expected) > 0
    with open_dump(out) as elf:
        assert _digests(elf) == expected
        dropped = next(p for p, h in reference.items() if h == zero)
        assert elf.page_state(dropped) == PageState.EXCLUDED


def test_flat_to_kdump_and_threads_give_the_same_bytes(
    flat61: Path, reference: dict[int, bytes], tmp_path: Path
) -> None:
    one, two = tmp_path / "t1.kdump", tmp_path / "t2.kdump"
    with open_dump(flat61) as src:
        write_dump(src, one, compress="zstd", threads=1)
        write_dump(src, two, compress="zstd", threads=3)
    assert one.read_bytes() == two.read_bytes()
    with open_dump(two) as back:
        assert _digests(back) == reference


def test_keep_bitmap_selects_pages(
    kdump61: Path, reference: dict[int, bytes], tmp_path: Path
) -> None:
    out = tmp_path / "half.kdump"
    with open_dump(kdump61) as src:
        keep = src.present_bitmap().copy()
        keep[1::2] = False
        calls: list[tuple[int, int]] = []
        stats = write_dump(src, out, keep=keep, progress=lambda d, t: calls.append((d, t)))
    expected = {p: h for p, h in reference.items() if p % 2 == 0}
    assert stats.pages_written == len(expected)
    assert calls and calls[-1] == (len(expected), len(expected))
    with open_dump(out) as back:
        assert _digests(back) == expected
        dropped = next(p for p in reference if p % 2)
        assert back.page_state(dropped) == PageState.EXCLUDED


def test_flattened_to_a_pipe(kdump61: Path, reference: dict[int, bytes], tmp_path: Path) -> None:
    out = tmp_path / "piped.flat"
    with out.open("wb") as sink_file:
        cat = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=sink_file)
        assert cat.stdin is not None
        with open_dump(kdump61) as src:
            stats = write_dump(src, cat.stdin, compress="lzo")
        cat.stdin.close()
        assert cat.wait() == 0
    assert stats.flattened
    with open_dump(out) as back:
        assert back.header.extra["flattened"]
        assert _digests(back) == reference


@needs_makedumpfile
@pytest.mark.parametrize("codec", MAKEDUMPFILE_CODECS)
def test_makedumpfile_reads_our_kdump(codec: str, kdump61: Path, tmp_path: Path) -> None:
    ours = tmp_path / "ours.kdump"
    with open_dump(kdump61) as src:
        write_dump(src, ours, compress=codec, exclude_zero=True)
    expected, got = tmp_path / "expected.txt", tmp_path / "got.txt"
    subprocess.run([MAKEDUMPFILE, "--dump-dmesg", str(kdump61), str(expected)],
                   check=True, capture_output=True)  # fmt: skip
    subprocess.run([MAKEDUMPFILE, "--dump-dmesg", str(ours), str(got)],
                   check=True, capture_output=True)  # fmt: skip
    assert b"TESTBED marker" in got.read_bytes()
    assert got.read_bytes() == expected.read_bytes()


@needs_makedumpfile
def test_elf_zero_pages_are_holes(elf61: Path, tmp_path: Path) -> None:
    out = tmp_path / "all.elf"
    with open_dump(elf61) as src:
        write_dump(src, out, fmt="elf")
        with open_dump(out) as ours:
            assert _digests(ours) == _digests(src)
            zero_pages = sum(
                int(np.count_nonzero(zero_mask(blob, 4096)))
                for _, blob in src.iter_page_chunks(max_pages=4096)
            )
    on_disk = out.stat().st_blocks * 512
    assert zero_pages > 10_000
    assert on_disk <= out.stat().st_size - zero_pages * 4096 + (1 << 20), (on_disk, zero_pages)


def test_makedumpfile_reads_our_elf(kdump61: Path, tmp_path: Path) -> None:
    ours = tmp_path / "ours.elf"
    with open_dump(kdump61) as src:
        write_dump(src, ours, fmt="elf")
    expected, got = tmp_path / "expected.txt", tmp_path / "got.txt"
    subprocess.run([MAKEDUMPFILE, "--dump-dmesg", str(kdump61), str(expected)],
                   check=True, capture_output=True)  # fmt: skip
    subprocess.run([MAKEDUMPFILE, "--dump-dmesg", str(ours), str(got)],
                   check=True, capture_output=True)  # fmt: skip
    assert got.read_bytes() == expected.read_bytes()


@needs_makedumpfile
def test_makedumpfile_reassembles_our_flat_stream(
    kdump61: Path, reference: dict[int, bytes], tmp_path: Path
) -> None:
    flat, regular, rearranged = tmp_path / "o.flat", tmp_path / "o.kdump", tmp_path / "r.kdump"
    with open_dump(kdump61) as src:
        write_dump(src, flat, compress="lzo", flattened=True)
        write_dump(src, regular, compress="lzo")
    with flat.open("rb") as stdin:
        subprocess.run([MAKEDUMPFILE, "-R", str(rearranged)], stdin=stdin,
                       check=True, capture_output=True)  # fmt: skip
    assert rearranged.read_bytes() == regular.read_bytes()
    with open_dump(rearranged) as back:
        assert _digests(back) == reference


def test_split_set_round_trip(kdump61: Path, reference: dict[int, bytes], tmp_path: Path) -> None:
    outs = [tmp_path / f"split.{i}" for i in range(3)]
    with open_dump(kdump61) as src:
        stats = write_split(src, list(outs), compress="zstd", exclude_zero=True)
    assert stats.files == 3 and stats.pages_written == len(reference)
    with open_dump([outs[2], outs[0], outs[1]]) as back:
        ranges = [(p["start_pfn"], p["end_pfn"]) for p in back.header.extra["split"]]
        assert ranges[0][0] == 0 and ranges[-1][1] == back.max_pfn
        assert _digests(back) == reference
    # One file alone has its range and nothing else.
    with open_dump(outs[1]) as middle:
        start, end = ranges[1]
        pfns = np.flatnonzero(middle.present_bitmap())
        assert pfns.size and pfns.min() >= start and pfns.max() < end
        outside = next(p for p in reference if p < start)
        assert middle.page_state(outside) == PageState.LOST  # in another file of the set


@needs_makedumpfile
def test_makedumpfile_reassembles_our_split_set(
    kdump61: Path, reference: dict[int, bytes], tmp_path: Path
) -> None:
    outs = [tmp_path / f"split.{i}" for i in range(2)]
    with open_dump(kdump61) as src:
        write_split(src, list(outs), compress="zlib")
    joined = tmp_path / "joined.kdump"
    subprocess.run([MAKEDUMPFILE, "--reassemble", *map(str, outs), str(joined)],
                   check=True, capture_output=True)  # fmt: skip
    with open_dump(joined) as back:
        assert _digests(back) == reference


def test_split_ranges_balance_pages() -> None:
    kept = np.zeros(100000, dtype=bool)
    kept[10000:40000] = True
    ranges = split_ranges(kept, 3)
    assert ranges[0][0] == 0 and ranges[-1][1] == 100000
    assert all(a % 1024 == 0 for a, _ in ranges)  # crash needs 64-aligned starts
    counts = [int(kept[a:b].sum()) for a, b in ranges]
    assert sum(counts) == 30000 and max(counts) - min(counts) <= 2 * 1024


def test_split_of_a_packed_bitmap_cuts_where_the_bool_one_does() -> None:
    from kdumpkit.dump.base import Bitmap
    from kdumpkit.dump.writer import split_bitmap_ranges

    rng = np.random.default_rng(3)
    for density in (0.001, 0.3, 0.9):
        for size in (5000, 100_000, 333_333):
            kept = rng.random(size) < density
            for parts in (1, 2, 3, 7):
                assert split_bitmap_ranges(Bitmap.from_bool(kept), parts) == split_ranges(
                    kept, parts
                )


def test_failed_write_is_marked_incomplete(
    kdump61: Path, reference: dict[int, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "full.kdump"
    real_pwrite = FileSink.pwrite
    calls = {"n": 0}

    def failing_pwrite(self: FileSink, offset: int, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 40 and offset:  # the disk fills up part way through the pages
            raise OSError(errno.ENOSPC, "No space left on device")
        real_pwrite(self, offset, data)

    monkeypatch.setattr(FileSink, "pwrite", failing_pwrite)
    with open_dump(kdump61) as src, pytest.raises(OSError, match="No space"):
        write_dump(src, out, compress="zlib")
    monkeypatch.setattr(FileSink, "pwrite", real_pwrite)
    with open_dump(out) as partial:
        assert partial.header.incomplete
        got = _digests(partial)
        assert 0 < len(got) < len(reference)
        assert all(reference[p] == h for p, h in got.items())
        lost = next(p for p in reference if p not in got)
        assert partial.page_state(lost) == PageState.LOST
        # Rewriting an incomplete dump keeps the flag.
        for fmt in ("kdump", "elf"):
            again = tmp_path / f"again.{fmt}"
            write_dump(partial, again, fmt=fmt, compress="none")
            with open_dump(again) as copy:
                assert copy.header.incomplete and _digests(copy) == got


def test_failed_elf_write_is_marked_incomplete(
    kdump61: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "full.elf"
    real_pwrite = FileSink.pwrite
    calls = {"n": 0}

    def failing_pwrite(self: FileSink, offset: int, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 20 and offset:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_pwrite(self, offset, data)

    monkeypatch.setattr(FileSink, "pwrite", failing_pwrite)
    with open_dump(kdump61) as src, pytest.raises(OSError):
        write_dump(src, out, fmt="elf")
    e_flags = struct.unpack_from("<I", out.read_bytes()[:64], 48)[0]
    assert e_flags & 1


@needs_makedumpfile
def test_we_read_makedumpfiles_split_set(
    elf61: Path, reference: dict[int, bytes], tmp_path: Path
) -> None:
    outs = [tmp_path / "m.0", tmp_path / "m.1"]
    # 4 MiB split blocks so that the 1 GiB fixture really is cut in two.
    subprocess.run([MAKEDUMPFILE, "--split", "-c", "-d", "31", "--splitblock-size", "4096",
                    str(elf61), *map(str, outs)], check=True, capture_output=True)  # fmt: skip
    with open_dump(list(reversed(outs))) as back:
        assert len(back.header.extra["split"]) == 2
        assert all(p["end_pfn"] > p["start_pfn"] for p in back.header.extra["split"])
        assert _digests(back) == reference


@pytest.mark.parametrize(
    ("fmt", "codec"), [("elf", "none"), ("kdump", "zstd"), ("kdump", "snappy")]
)
def test_drgn_reads_our_output(fmt: str, codec: str, kdump61: Path, tmp_path: Path) -> None:
    # drgn (libkdumpfile for kdump files) is an independent reader: it must see the same
    # physical pages and, through the page tables, the same kernel data.
    drgn = pytest.importorskip("drgn")
    out = tmp_path / f"ours.{fmt}"
    with open_dump(kdump61) as src:
        write_dump(src, out, fmt=fmt, compress=codec)
        vmci = src.vmcoreinfo
        assert vmci is not None
        prog = drgn.Program()
        try:
            prog.set_core_dump(str(out))
        except Exception as exc:  # a drgn built without libkdumpfile or its codec
            pytest.skip(f"drgn cannot open kdump files here: {exc}")
        uts_name = vmci.symbol("init_uts_ns") + vmci.offset("uts_namespace.name")
        release = prog.read(uts_name + 2 * 65, 65).split(b"\0")[0].decode()
        assert release == src.header.utsname["release"]
        for pfn in np.flatnonzero(src.present_bitmap())[::499].tolist():
            assert prog.read(pfn * 4096, 4096, True) == src.read_page(pfn)


@pytest.mark.slow
@pytest.mark.parametrize("form", ["elf", "split"])
def test_crash_reads_our_output(form: str, kdump61: Path, fx61: Path, tmp_path: Path) -> None:
    crash, vmlinux = crash_9()
    with open_dump(kdump61) as src:
        if form == "elf":
            files = [tmp_path / "ours.elf"]
            write_dump(src, files[0], fmt="elf")
        else:
            files = [tmp_path / f"ours.{i}" for i in range(3)]
            write_split(src, list(files), compress="zstd")
    run = subprocess.run(
        [*crash, "-s", str(vmlinux), *map(str, files)],
        input="sys\n!echo ==\nlog\nquit\n", capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert "==\n" in run.stdout, run.stdout + run.stderr
    sys_text, log_text = run.stdout.split("==\n", 1)
    # Everything but the KERNEL and DUMPFILE(S) lines, as crash printed it on vmcore.kdump.
    expected_sys = (fx61 / "crash-9.0.2" / "sys.txt").read_text().splitlines()[2:]
    assert sys_text.splitlines()[-len(expected_sys) :] == expected_sys
    assert log_text == (fx61 / "crash-9.0.2" / "log.txt").read_text()


def test_makedumpfile_178_reads_our_zstd(kdump61: Path, fx61: Path, tmp_path: Path) -> None:
    mdf = makedumpfile_178()
    ours, text = tmp_path / "ours.kdump", tmp_path / "dmesg.txt"
    with open_dump(kdump61) as src:
        write_dump(src, ours, compress="zstd", exclude_zero=True)
    subprocess.run([*mdf, "--dump-dmesg", str(ours), str(text)], check=True, capture_output=True)
    # The same text 1.7.8 printed from /proc/vmcore in the capture kernel.
    assert text.read_bytes() == (fx61 / "makedumpfile" / "dump-dmesg-1.7.8.txt").read_bytes()


def test_keep_beyond_the_source_is_cut_to_its_pages(
    kdump61: Path, elf61: Path, tmp_path: Path
) -> None:
    # A keep bitmap asking for every pfn (holes and excluded pages too) writes what a
    # keep of just the source's pages writes, whether given as bools or packed.
    from kdumpkit.dump.base import Bitmap

    outs = []
    with open_dump(kdump61) as ref, open_dump(elf61) as src:
        wanted = np.pad(ref.present_bitmap(), (0, src.max_pfn - ref.max_pfn))
        wanted[: 1 << 16] = True  # pages of the first 256 MiB, present or not
        for keep in (wanted, Bitmap.from_bool(wanted), wanted & src.present_bitmap()):
            out = tmp_path / f"ours.{len(outs)}"
            write_dump(src, out, compress="zstd", keep=keep, exclude_zero=True, dump_level=31)
            outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]


def test_elf_windows_match_the_whole_bitmaps(elf61: Path) -> None:
    with open_dump(elf61) as src:
        present, ram = src.present_bitmap(), src.ram_bitmap()
        for lo, hi in ((0, 100), (150, 70_000), (src.max_pfn - 9, src.max_pfn + 5)):
            assert np.array_equal(src.present_window(lo, hi), present[lo:hi])
            assert np.array_equal(src.ram_window(lo, hi), ram[lo:hi])
        assert src.count_windows(ram=True) == int(ram.sum())
        assert src.count_windows(ram=False) == int(present.sum())


def _sparse_tib_elf(path: Path, data_pages: int) -> None:
    """An ELF core with ``data_pages`` of RAM at 0 and as many just below 1 TiB."""
    ps = 4096
    phnum = 2
    data_at = ps
    ehdr = struct.pack(
        "<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + bytes(9), 4, 62, 1, 0, 64, 0, 0,
        64, 56, phnum, 0, 0, 0,
    )  # fmt: skip
    size = data_pages * ps
    far = (1 << 40) - size
    phdrs = b"".join(
        struct.pack("<IIQQQQQQ", 1, 7, data_at + i * size, 0, paddr, size, size, 0)
        for i, paddr in enumerate((0, far))
    )
    rng = np.random.default_rng(5)
    pages = rng.integers(0, 4, size=(2 * data_pages, ps), dtype=np.uint8)
    pages[::3] = 0  # some zero pages
    with path.open("wb") as f:
        f.write((ehdr + phdrs).ljust(data_at, b"\0"))
        f.write(pages.tobytes())


@pytest.mark.parametrize(("fmt", "codec"), [("kdump", "zstd"), ("elf", "none")])
def test_writer_memory_does_not_grow_with_the_address_space(
    fmt: str, codec: str, tmp_path: Path
) -> None:
    # 2^28 pfns (1 TiB) of address space, 8 MiB of pages: the keep bitmap is packed
    # and read a window at a time (a byte per pfn would be 256 MiB per bitmap).
    src = tmp_path / "tib.elf"
    _sparse_tib_elf(src, 1024)
    # VmHWM: the peak of this process image (ru_maxrss would carry over the peak of
    # the forking pytest process across exec).
    script = (
        "import sys\n"
        "from kdumpkit.dump import open_dump\n"
        "from kdumpkit.dump.writer import write_dump\n"
        "with open_dump(sys.argv[1]) as d:\n"
        "    s = write_dump(d, sys.argv[2], fmt=sys.argv[3], compress=sys.argv[4],\n"
        "                   exclude_zero=True)\n"
        "hwm = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]\n"
        "print(d.max_pfn, s.pages_written, s.zero_pages, hwm)\n"
    )
    out = tmp_path / f"out.{fmt}"
    done = subprocess.run(
        [sys.executable, "-c", script, str(src), str(out), fmt, codec],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    max_pfn, written, zeros, max_rss_kib = map(int, done.stdout.split())
    zero_pages = 2048 // 3 + 1
    stored = 2048 if fmt == "kdump" else 2048 - zero_pages  # ELF drops zero pages
    assert max_pfn == 1 << 28 and written == stored and zeros == zero_pages
    assert max_rss_kib < 160 * 1024, f"peak RSS {max_rss_kib} KiB"
    with open_dump(out) as back:
        assert back.max_pfn == 1 << 28 and back.count_present() == stored
        assert back.read_page((1 << 28) - 1) == bytes(_page_of(src, 2047))


def _page_of(path: Path, index: int) -> bytes:
    with path.open("rb") as f:
        f.seek(4096 + index * 4096)
        return f.read(4096)


def test_writing_over_the_input_is_refused(kdump61: Path, tmp_path: Path) -> None:
    copy = tmp_path / "in.kdump"
    shutil.copyfile(kdump61, copy)
    with open_dump(copy) as src:
        with pytest.raises(DumpError, match="is the dump being read"):
            write_dump(src, copy, compress="zlib")
        with pytest.raises(DumpError, match="is the dump being read"):
            write_split(src, [tmp_path / "a", copy])
    assert copy.read_bytes() == kdump61.read_bytes()


def test_output_that_refuses_mapped_pages_gets_copies(
    elf61: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filesystem that pins the writer's pages (9p zero-copy, O_DIRECT) fails with EFAULT
    on pages mapped from /proc/vmcore (VM_PFNMAP); seen on a 4 GiB testbed guest saving
    an uncompressed ELF dump to 9p. The sink then writes copies, and the file is whole."""
    import os

    real_pwrite = os.pwrite
    refused = {"n": 0}

    def pinning_pwrite(fd: int, data: bytes | memoryview, offset: int) -> int:
        if isinstance(data, memoryview) and not isinstance(data.obj, bytes):
            refused["n"] += 1
            raise OSError(errno.EFAULT, "Bad address")
        return real_pwrite(fd, data, offset)

    expected = tmp_path / "expected.elf"
    with open_dump(elf61) as src:
        write_dump(src, expected, fmt="elf", compress="none", dump_level=0)
    monkeypatch.setattr("kdumpkit.dump.write_sink.os.pwrite", pinning_pwrite)
    out = tmp_path / "copied.elf"
    with open_dump(elf61) as src:
        write_dump(src, out, fmt="elf", compress="none", dump_level=0)
    assert refused["n"] == 1  # refused once, then copies only
    assert out.read_bytes() == expected.read_bytes()


def test_zero_mask_reads_past_the_first_cache_line() -> None:
    page = 4096
    pages = np.zeros((6, page), dtype=np.uint8)
    pages[1, 0] = 1  # in the first cache line
    pages[2, 64] = 1  # just past it
    pages[3, page - 1] = 0x80  # the last byte
    pages[5, 2000] = 7
    assert zero_mask(pages.tobytes(), page).tolist() == [True, False, False, False, True, False]
