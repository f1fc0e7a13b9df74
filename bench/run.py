#!/usr/bin/env python3
"""Run every benchmark on the real 6.1 fixture, one after the other (``make bench``).

Each script prints its own figures and ratios against the peer tool on the same input:
dump reading and reassembly (makedumpfile -R), capture (makedumpfile), analysis
(crash and drgn, when a DWARF vmlinux is given with --vmlinux). Capture runs again on
each busy 4 GiB guest's /proc/vmcore that ``testbed/vm.py big-dump`` left in the cache
(``--big`` makes one first, about 70 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("KDUMPKIT_FIXTURES", ROOT.parent / "shared" / "fixtures"))
FIXTURE = FIXTURES / "linux-6.1.0-56-cloud-amd64-kdump"
CACHE = Path(os.environ.get("KDUMPKIT_CACHE", ROOT / ".cache"))
TESTBED_CACHE = Path(os.environ.get("TESTBED_CACHE", CACHE / "testbed"))


def decompressed_elf() -> Path:
    """The fixture's raw /proc/vmcore, decompressed sparse into the cache once."""
    out = CACHE / "fixtures" / FIXTURE.name / "vmcore.elf"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        subprocess.run(
            ["zstd", "-q", "-f", "-d", "--sparse", str(FIXTURE / "vmcore.elf.zst"), "-o", str(tmp)],
            check=True,
        )
        tmp.rename(out)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vmlinux", help="a DWARF vmlinux, to time crash and drgn too")
    parser.add_argument(
        "--big", action="store_true", help="make a 4 GiB guest's dump first if there is none"
    )
    args = parser.parse_args()
    if not FIXTURE.is_dir():
        print(f"bench: the real-dump fixture is not at {FIXTURE}; set KDUMPKIT_FIXTURES")
        return 2
    if shutil.which("zstd") is None:
        print("bench: zstd is needed to decompress the fixture")
        return 2
    bench = ROOT / "bench"
    big = sorted(TESTBED_CACHE.glob("big/*/vmcore.elf"))
    if args.big and not big:
        made = subprocess.run([sys.executable, str(ROOT / "testbed" / "vm.py"), "big-dump", "6.1"])
        if made.returncode != 0:
            return made.returncode
        big = sorted(TESTBED_CACHE.glob("big/*/vmcore.elf"))
    runs = [
        [sys.executable, str(bench / "dump_read.py"), str(FIXTURE)],
        [sys.executable, str(bench / "capture.py"), "--input", str(decompressed_elf())],
        [sys.executable, str(bench / "analysis.py"), "--dump", str(FIXTURE / "vmcore.kdump")]
        + (["--vmlinux", args.vmlinux] if args.vmlinux else []),
    ]
    runs += [
        [sys.executable, str(bench / "capture.py"), "--input", str(vmcore), "--repeat", "2"]
        for vmcore in big
    ]
    status = 0
    for argv in runs:
        print(f"\n=== {Path(argv[1]).name}", flush=True)
        status |= subprocess.run(argv, cwd=ROOT).returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
