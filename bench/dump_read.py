#!/usr/bin/env python3
"""Dump-layer speed on the real fixture (a script, not a test).

    python3 bench/dump_read.py [FIXTURE_DIR]

Prints, for vmcore.kdump, vmcore.flat and the decompressed vmcore.elf: open time,
every present page read in pfn order (MB/s of page data), random 4 KiB reads
per second; then reassembly of vmcore.flat against ``makedumpfile -R`` and
write speed per codec from vmcore.kdump and from the whole vmcore.elf.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kdumpkit.dump import open_dump  # noqa: E402
from kdumpkit.dump.flat import reassemble  # noqa: E402
from kdumpkit.dump.writer import write_dump  # noqa: E402

DEFAULT_FIXTURE = ROOT.parent / "shared" / "fixtures" / "linux-6.1.0-56-cloud-amd64-kdump"
RANDOM_READS = 20000


def bench_read(path: Path) -> None:
    """Open, sequential page reads and random 4 KiB reads of one dump."""
    started = time.perf_counter()
    dump = open_dump(path)
    opened = time.perf_counter() - started
    with dump:
        started = time.perf_counter()
        pages = sum(1 for _ in dump.iter_pages())
        seq = time.perf_counter() - started
        pfns = np.flatnonzero(dump.present_bitmap())
        rng = np.random.default_rng(0)
        picks = rng.choice(pfns, RANDOM_READS).tolist()
        started = time.perf_counter()
        for pfn in picks:
            dump.read(pfn * dump.page_size, 4096)
        rand = time.perf_counter() - started
    mb = pages * 4096 / 1e6
    print(
        f"{path.name:14} open {opened * 1000:7.1f} ms | {pages:7d} pages in {seq:6.2f} s "
        f"= {mb / seq:7.1f} MB/s | random 4 KiB: {RANDOM_READS / rand:8.0f} reads/s"
    )


def bench_reassemble(flat: Path) -> None:
    """Our reassembly against makedumpfile -R on the same file."""
    with tempfile.TemporaryDirectory() as tmp:
        ours = Path(tmp) / "ours.kdump"
        started = time.perf_counter()
        reassemble(flat, ours)
        t_ours = time.perf_counter() - started
        line = f"reassemble {flat.name}: ours {t_ours * 1000:.1f} ms"
        mdf = shutil.which("makedumpfile")
        if mdf:
            theirs = Path(tmp) / "theirs.kdump"
            with flat.open("rb") as stdin:
                started = time.perf_counter()
                subprocess.run([mdf, "-R", str(theirs)], stdin=stdin, check=True,
                               capture_output=True)  # fmt: skip
                t_theirs = time.perf_counter() - started
            same = ours.read_bytes() == theirs.read_bytes()
            line += (f", makedumpfile -R {t_theirs * 1000:.1f} ms, ratio ours/theirs "
                     f"{t_ours / t_theirs:.2f}, identical output: {same}")  # fmt: skip
        print(line)


def bench_write(source: Path, label: str) -> None:
    """Every page of ``source`` rewritten with each codec, 1 and 2 threads."""
    with open_dump(source) as src, tempfile.TemporaryDirectory() as tmp:
        for codec in ("zlib", "lzo", "snappy", "zstd", "none"):
            for threads in (1, 2):
                out = Path(tmp) / f"o.{codec}"
                stats = write_dump(src, out, compress=codec, threads=threads, exclude_zero=True)
                mb = stats.pages_written * 4096 / 1e6
                rate = mb / stats.seconds
                print(f"write {label} -> kdump {codec:6} threads={threads}: "
                      f"{stats.seconds:5.2f} s = {rate:6.1f} MB/s of pages, "
                      f"{stats.file_size} bytes")  # fmt: skip
                os.unlink(out)


def main() -> int:
    fixture = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_FIXTURE
    elf = ROOT / ".cache" / "fixtures" / fixture.name / "vmcore.elf"
    for path in (fixture / "vmcore.kdump", fixture / "vmcore.flat", elf):
        if path.exists():
            bench_read(path)
        else:
            print(f"{path}: missing (run the tests once to decompress vmcore.elf.zst)")
    bench_reassemble(fixture / "vmcore.flat")
    bench_write(fixture / "vmcore.kdump", "kdump")
    if elf.exists():
        bench_write(elf, "elf (all RAM)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
