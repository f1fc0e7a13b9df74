"""``kdumpkit save`` side by side with makedumpfile on the same input.

For every codec makedumpfile has (``-c`` zlib, ``-l`` lzo, ``-z`` zstd) at dump
levels 31 and 1: the wall time and output size of makedumpfile (Debian's 1.7.2,
and 1.7.8 when unpacked under .cache/ as testbed/15-fetch-newer-tools.sh does),
of ``kdumpkit save`` with one and two threads, the ratios, and our peak RSS.
Each figure is the best of ``--repeat`` runs (the machine is shared).

    python3 bench/capture.py [--input vmcore.elf] [--repeat 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INPUT = ROOT / ".cache" / "fixtures" / "vmcore.elf"
#: makedumpfile flag -> our --compress name
CODECS = {"-c": "zlib", "-l": "lzo", "-z": "zstd"}
LEVELS = (31, 1)


@dataclass
class Run:
    """One measured command."""

    seconds: float
    size: int
    max_rss_mb: float
    #: peak RssAnon (sampled): memory of our own, without the mapped input file
    max_anon_mb: float = 0.0
    #: user + system CPU seconds (less sensitive than wall time to a shared machine)
    cpu: float = 0.0


@dataclass
class Row:
    """One codec and level: makedumpfile against us."""

    tool: str
    codec: str
    level: int
    theirs: Run
    ours_1: Run
    ours_2: Run

    @property
    def time_ratio_1(self) -> float:
        return self.ours_1.seconds / self.theirs.seconds

    @property
    def time_ratio_2(self) -> float:
        return self.ours_2.seconds / self.theirs.seconds

    @property
    def size_ratio(self) -> float:
        return self.ours_1.size / self.theirs.size


def makedumpfiles() -> dict[str, list[str]]:
    """Available makedumpfile builds: name -> argv prefix."""
    found: dict[str, list[str]] = {}
    if Path("/usr/bin/makedumpfile").exists():
        found["makedumpfile 1.7.2"] = ["/usr/bin/makedumpfile"]
    for root in sorted((ROOT / ".cache").glob("*/tools-sid")) + sorted(
        (ROOT / ".cache").glob("tools-sid")
    ):
        binary = root / "usr/bin/makedumpfile"
        loader = root / "usr/lib64/ld-linux-x86-64.so.2"
        if binary.exists() and loader.exists():
            libs = root / "usr/lib/x86_64-linux-gnu"
            found["makedumpfile 1.7.8"] = [str(loader), "--library-path", str(libs), str(binary)]
            break
    return found


def supports(argv: list[str], flag: str) -> bool:
    """Whether this makedumpfile build has the codec ``flag`` enabled."""
    name = {"-c": None, "-l": "lzo", "-z": "zstd"}[flag]
    if name is None:
        return True
    out = subprocess.run([*argv, "-v"], capture_output=True, text=True, check=False)
    return f"{name}\tenabled" in (out.stdout + out.stderr)


def _sample_anon(pid: int, peak: list[float], stop: threading.Event) -> None:
    """Poll /proc/PID/status for RssAnon until ``stop``; keep the peak in ``peak[0]``."""
    path = f"/proc/{pid}/status"
    while not stop.is_set():
        try:
            with open(path) as status:
                for line in status:
                    if line.startswith("RssAnon:"):
                        peak[0] = max(peak[0], int(line.split()[1]) / 1024)
        except OSError:
            return
        stop.wait(0.01)


def measure(argv: list[str], output: Path, repeat: int) -> Run:
    """Best wall time of ``repeat`` runs, the output's size and the child's peak RSS."""
    best: Run | None = None
    for _ in range(repeat):
        output.unlink(missing_ok=True)
        started = time.monotonic()
        proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
        )
        peak, stop = [0.0], threading.Event()
        sampler = threading.Thread(target=_sample_anon, args=(proc.pid, peak, stop))
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
        stop.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv)}")
        cpu = usage.ru_utime + usage.ru_stime
        run = Run(seconds, output.stat().st_size, usage.ru_maxrss / 1024, peak[0], cpu)
        if best is None or run.seconds < best.seconds:
            best = Run(
                run.seconds,
                run.size,
                max(run.max_rss_mb, best.max_rss_mb if best else 0),
                max(run.max_anon_mb, best.max_anon_mb if best else 0),
                run.cpu,
            )
    assert best is not None
    output.unlink(missing_ok=True)
    return best


def our_argv(vmcore: Path, out: Path, level: int, codec: str, threads: int) -> list[str]:
    """``kdumpkit save`` with the options of one row."""
    return [
        sys.executable, "-m", "kdumpkit", "save", str(vmcore), str(out), "-q", "-f",
        "-d", str(level), "--compress", codec, "--threads", str(threads),
    ]  # fmt: skip


def bench(vmcore: Path, repeat: int) -> list[Row]:
    """Every (makedumpfile build, codec, level) row."""
    rows = []
    tools = makedumpfiles()
    if not tools:
        raise SystemExit("makedumpfile is not installed")
    with tempfile.TemporaryDirectory(prefix="kdumpkit-bench-") as tmp:
        out = Path(tmp) / "out"
        ours_cache: dict[tuple[str, int], tuple[Run, Run]] = {}
        for tool, argv in tools.items():
            for flag, codec in CODECS.items():
                if not supports(argv, flag):
                    continue
                for level in LEVELS:
                    theirs = measure([*argv, flag, "-d", str(level), str(vmcore), str(out)], out,
                                     repeat)  # fmt: skip
                    if (codec, level) not in ours_cache:
                        ours_cache[(codec, level)] = (
                            measure(our_argv(vmcore, out, level, codec, 1), out, repeat),
                            measure(our_argv(vmcore, out, level, codec, 2), out, repeat),
                        )
                    ours_1, ours_2 = ours_cache[(codec, level)]
                    rows.append(Row(tool, codec, level, theirs, ours_1, ours_2))
                    print(format_row(rows[-1]), flush=True)
    return rows


HEADER = (
    f"{'tool':<19} {'codec':<5} {'-d':>3} {'theirs s':>9} {'ours 1t':>8} {'ours 2t':>8} "
    f"{'t1/th':>6} {'t2/th':>6} {'their MB':>9} {'our MB':>8} {'size':>6} {'RSS MB':>7} "
    f"{'anon MB':>7} {'th RSS':>6} {'th cpu':>6} {'our cpu':>7}"
)


def format_row(row: Row) -> str:
    """One line of the table."""
    return (
        f"{row.tool:<19} {row.codec:<5} {row.level:>3} {row.theirs.seconds:>9.2f} "
        f"{row.ours_1.seconds:>8.2f} {row.ours_2.seconds:>8.2f} {row.time_ratio_1:>6.2f} "
        f"{row.time_ratio_2:>6.2f} {row.theirs.size / 1e6:>9.2f} {row.ours_1.size / 1e6:>8.2f} "
        f"{row.size_ratio:>6.3f} {max(row.ours_1.max_rss_mb, row.ours_2.max_rss_mb):>7.1f} "
        f"{max(row.ours_1.max_anon_mb, row.ours_2.max_anon_mb):>7.1f} "
        f"{row.theirs.max_rss_mb:>6.1f} {row.theirs.cpu:>6.2f} {row.ours_1.cpu:>7.2f}"
    )


def filter_rate(vmcore: Path, repeat: int) -> str:
    """How fast the struct-page scan alone classifies RAM (in this process, best of runs)."""
    sys.path.insert(0, str(ROOT))
    from kdumpkit.capture.filter import exclude_unnecessary_pages
    from kdumpkit.dump.open import open_dump

    best = float("inf")
    with open_dump(vmcore) as dump:
        for _ in range(repeat):
            started = time.process_time()
            result = exclude_unnecessary_pages(dump, 31)
            best = min(best, time.process_time() - started)
        ram_gib = result.ram_pages * dump.page_size / (1 << 30)
    rate = ram_gib / best
    return f"filter -d 31: {ram_gib:.2f} GiB of RAM in {best:.3f} CPU s ({rate:.1f} GiB/s)"


def main() -> int:
    """Run the benchmark and print the table (and JSON if asked)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not args.input.exists():
        print(f"{args.input}: missing (run the tests once to decompress the fixture)")
        return 2
    print(f"input {args.input} ({args.input.stat().st_size / 1e6:.0f} MB), best of {args.repeat}")
    print(filter_rate(args.input, args.repeat), flush=True)
    print(HEADER, flush=True)
    rows = bench(args.input, args.repeat)
    if args.json:
        records = [
            dict(asdict(r), time_ratio_1=r.time_ratio_1, time_ratio_2=r.time_ratio_2,
                 size_ratio=r.size_ratio)
            for r in rows
        ]  # fmt: skip
        args.json.write_text(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
