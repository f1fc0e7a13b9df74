"""Fill a testbed guest's memory the way a busy machine's is, before it panics.

Run in the guest (with the host's Python, chrooted into the host root) when the kernel
command line has ``kdtb.workload=MIB``. A freshly booted guest is almost all free, zero
pages, which makes a poor benchmark input: every dump level keeps next to nothing. This
leaves, until the panic:

* anonymous memory (makedumpfile's "user process data") held by a child process that
  sleeps: half of MIB;
* shared-memory file pages (page cache) in the guest's tmpfs: a third of MIB;
* kernel memory: inodes and dentries of ``--files`` empty files, plus what it costs to
  read the sample through 9p.

The bytes are real files of the host (shared libraries, programs, text) tiled to size, so
each page compresses as real memory roughly does. Prints one line per part.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

MIB = 1 << 20
SAMPLE_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/share/doc", "/usr/lib/python3")
SCRATCH = Path("/dev/shm/workload")


def read_sample(limit: int) -> bytes:
    """Up to ``limit`` bytes of the host's files, in a fixed order (the same every run)."""
    pieces: list[bytes] = []
    total = 0
    for top in SAMPLE_DIRS:
        for folder, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(folder, name)
                if os.path.islink(path):
                    continue
                try:
                    with open(path, "rb") as f:
                        data = f.read(limit - total)
                except OSError:
                    continue
                pieces.append(data)
                total += len(data)
                if total >= limit:
                    return b"".join(pieces)
    return b"".join(pieces)


def tile(target: memoryview, sample: bytes) -> None:
    """Fill ``target`` with copies of ``sample``."""
    for start in range(0, len(target), len(sample)):
        chunk = target[start : start + len(sample)]
        chunk[:] = sample[: len(chunk)]


def hold_anonymous(size: int, sample: bytes) -> int:
    """Fork a child that fills ``size`` bytes of anonymous memory and sleeps; its pid."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        buffer = bytearray(size)
        tile(memoryview(buffer), sample)
        os.write(ready_w, b"1")
        os.close(ready_w)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        while True:  # until the panic
            time.sleep(3600)
    os.close(ready_w)
    if os.read(ready_r, 1) != b"1":
        raise SystemExit("workload: the memory-holding child died")
    os.close(ready_r)
    return pid


def write_cache(size: int, sample: bytes) -> int:
    """Write ``size`` bytes into tmpfs files of 64 MiB; the number of files."""
    SCRATCH.mkdir(parents=True, exist_ok=True)
    block = bytearray(64 * MIB)
    tile(memoryview(block), sample)
    count = 0
    for written in range(0, size, len(block)):
        with open(SCRATCH / f"cache-{count:03}.bin", "wb") as f:
            f.write(block[: min(len(block), size - written)])
        count += 1
    return count


def make_inodes(count: int) -> None:
    """``count`` empty files (an inode and a dentry each in the slab)."""
    folder = SCRATCH / "inodes"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        os.close(os.open(folder / f"f{i:07}", os.O_CREAT | os.O_WRONLY, 0o600))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, required=True, help="memory to fill, MiB")
    parser.add_argument("--files", type=int, default=40_000, help="empty files to create")
    parser.add_argument("--sample-mib", type=int, default=48)
    args = parser.parse_args(argv)
    began = time.monotonic()
    sample = read_sample(args.sample_mib * MIB)
    if not sample:
        print("workload: no sample files found", file=sys.stderr)
        return 1
    print(f"workload: sample {len(sample) // MIB} MiB read", flush=True)
    pid = hold_anonymous(args.mib // 2 * MIB, sample)
    print(f"workload: {args.mib // 2} MiB anonymous held by pid {pid}", flush=True)
    files = write_cache(args.mib // 3 * MIB, sample)
    print(f"workload: {args.mib // 3} MiB in {files} tmpfs files", flush=True)
    make_inodes(args.files)
    print(f"workload: {args.files} empty files; {time.monotonic() - began:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
