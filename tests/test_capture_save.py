"""``kdumpkit save`` on the real 6.1 dump: what it keeps, what it writes, how it fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from oracles import crash_9, makedumpfile_178
from test_capture_filter import ROOT, makedumpfile_reference

from kdumpkit.capture.filter import PageClass, exclude_unnecessary_pages
from kdumpkit.capture.save import SaveError, report_rows, save_dump
from kdumpkit.cli.main import main
from kdumpkit.dump.open import open_dump


def _same_pages(a, b, pfns: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    for pfn in pfns.tolist():
        assert a.read_page(pfn) == b.read_page(pfn), hex(pfn)


def test_save_level_31_matches_makedumpfile(elf61: Path, tmp_path: Path) -> None:
    reference, counts = makedumpfile_reference(elf61, 31)
    out = tmp_path / "dump.kdump"
    with open_dump(elf61) as src:
        result = save_dump(src, str(out), dump_level=31, compress="zstd", threads=2)
    with open_dump(out) as ours, open_dump(reference) as theirs, open_dump(elf61) as src:
        assert ours.format == "kdump" and not ours.header.incomplete
        assert ours.header.dump_level == 31
        assert ours.header.utsname["release"] == "6.1.0-56-cloud-amd64"
        assert ours.header.utsname == theirs.header.utsname
        ours_keep, their_keep = ours.present_bitmap(), theirs.present_bitmap()
        # Same pages as makedumpfile but for the partial page 0x9f (see test_capture_filter).
        assert set(np.flatnonzero(ours_keep != their_keep).tolist()) == {0x9F}
        assert np.array_equal(ours.ram_bitmap(), theirs.ram_bitmap())
        # Every page we wrote holds the source's bytes (zero pages via the shared one).
        _same_pages(ours, src, np.flatnonzero(ours_keep))
    assert result.zero_pages == 3148  # makedumpfile's 3147 zero pages + page 0x9f
    rows = dict(report_rows(result))
    assert rows["    Free pages"] == counts[PageClass.FREE]
    assert rows["Total pages"] == 262100


def test_cli_save_elf_drops_zero_pages_too(elf61: Path, tmp_path: Path) -> None:
    out = tmp_path / "dump.elf"
    argv = ["save", str(elf61), str(out), "-d", "31", "--format", "elf", "-q"]
    assert main(argv) == 0
    with open_dump(out) as ours, open_dump(elf61) as src:
        assert ours.format == "elf"
        present = ours.present_bitmap()
        keep = exclude_unnecessary_pages(src, 31).keep
        assert not np.any(present & ~keep)
        # What the filter kept but the ELF file lacks are exactly the zero pages.
        dropped = np.flatnonzero(keep & ~present)
        assert len(dropped) == 3148
        for pfn in dropped.tolist():
            assert src.read_page(pfn) == bytes(4096)
        _same_pages(ours, src, np.flatnonzero(present)[::7])


def test_cli_save_to_stdout_is_flattened(elf61: Path, tmp_path: Path) -> None:
    out = tmp_path / "dump.flat"
    with out.open("wb") as stdout:
        run = subprocess.run(
            [sys.executable, "-m", "kdumpkit", "save", str(elf61), "-", "--compress", "lzo", "-q"],
            stdout=stdout, stderr=subprocess.PIPE, cwd=ROOT, check=False, timeout=120,
        )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert out.read_bytes()[:12] == b"makedumpfile"
    with open_dump(out) as ours, open_dump(elf61) as src:
        assert ours.header.compression == "lzo"
        keep = exclude_unnecessary_pages(src, 31).keep
        assert np.array_equal(ours.present_bitmap(), keep)


def test_refiltering_a_saved_dump(elf61: Path, tmp_path: Path) -> None:
    level1, _ = makedumpfile_reference(elf61, 1)
    out = tmp_path / "refiltered.kdump"
    assert main(["save", str(level1), str(out), "-d", "31", "--compress", "zlib", "-q"]) == 0
    with open_dump(out) as ours, open_dump(elf61) as src, open_dump(level1) as mid:
        expected = exclude_unnecessary_pages(src, 31).keep & mid.present_bitmap()
        assert np.array_equal(ours.present_bitmap(), expected)
        _same_pages(ours, src, np.flatnonzero(expected)[::50])


def test_save_writes_the_log_too(elf61: Path, fx61: Path, tmp_path: Path) -> None:
    log = tmp_path / "dmesg.txt"
    out = tmp_path / "d.kdump"
    assert main(["save", str(elf61), str(out), "--dmesg", str(log), "-q", "-d", "31"]) == 0
    assert log.read_bytes() == (fx61 / "makedumpfile" / "dump-dmesg-1.7.8.txt").read_bytes()
    assert oct(log.stat().st_mode & 0o777) == "0o600"


def test_split_set_reads_back_whole(elf61: Path, tmp_path: Path) -> None:
    out = tmp_path / "part"
    assert main(["save", str(elf61), str(out), "--split", "2", "-q"]) == 0
    parts = [tmp_path / "part.1", tmp_path / "part.2"]
    with open_dump(parts) as ours, open_dump(elf61) as src:
        assert np.array_equal(ours.present_bitmap(), exclude_unnecessary_pages(src, 31).keep)


def test_save_refuses_bad_requests(elf61: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "x"
    out.write_bytes(b"keep me")
    assert main(["save", str(elf61), str(out)]) == 2
    assert "exists (use --force" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert (
        main(["save", str(elf61), str(tmp_path / "y"), "--format", "elf", "--compress", "zlib"])
        == 2
    )
    assert "not compressed" in capsys.readouterr().err
    assert main(["save", str(elf61), str(tmp_path / "y"), "-d", "40"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "outside 0..31" in err
    with open_dump(elf61) as src, pytest.raises(SaveError):
        save_dump(src, [str(tmp_path / "a")], fmt="elf", compress="none")


def test_save_of_a_truncated_dump_is_one_line(tmp_path: Path, elf61: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cut = tmp_path / "cut.elf"
    with elf61.open("rb") as f:
        cut.write_bytes(f.read(3000))
    assert main(["save", str(cut), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kdumpkit save: ")


@pytest.mark.slow
@pytest.mark.parametrize("codec", ["zstd", "zlib"])  # zlib: libdeflate's streams
def test_crash_9_reads_our_dump_like_makedumpfiles(
    codec: str, elf61: Path, fx61: Path, tmp_path: Path
) -> None:
    crash, vmlinux = crash_9()
    out = tmp_path / "dump.kdump"
    assert main(["save", str(elf61), str(out), "-q", "--compress", codec]) == 0  # -d 31
    run = subprocess.run(
        [*crash, "-s", str(vmlinux), str(out)],
        input="sys\n!echo ==\nbt\n!echo ==\nkmem -i\nquit\n", capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    sys_text, bt_text, kmem_text = run.stdout.split("==\n")
    expected_sys = (fx61 / "crash-9.0.2" / "sys.txt").read_text().splitlines()[2:]
    assert sys_text.splitlines()[2:] == expected_sys  # all but the KERNEL and DUMPFILE paths
    assert "[PARTIAL DUMP]" in sys_text.splitlines()[1]
    assert bt_text == (fx61 / "crash-9.0.2" / "bt.txt").read_text()
    assert kmem_text == (fx61 / "crash-9.0.2" / "kmem-i.txt").read_text()


@pytest.mark.parametrize(("flag", "codec", "threads"), [("-z", "zstd", 2), ("-l", "lzo", 1)])
def test_save_is_makedumpfile_178s_bytes(
    flag: str, codec: str, threads: int, elf61: Path, tmp_path: Path
) -> None:
    # The whole capture path (filter, zero pages, codec, layout) on the raw
    # /proc/vmcore writes exactly what makedumpfile 1.7.8 writes, threads or not.

    theirs = tmp_path / "theirs"
    subprocess.run(
        [*makedumpfile_178(), flag, "-d", "31", str(elf61), str(theirs)],
        check=True, capture_output=True,
    )  # fmt: skip
    ours = tmp_path / "ours"
    with open_dump(elf61) as src:
        save_dump(src, ours, dump_level=31, compress=codec, threads=threads)
    assert ours.read_bytes() == theirs.read_bytes()
