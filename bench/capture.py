"""``kdumpkit save`` side by side with makedumpfile on the same input.

For every codec makedumpfile has (``-c`` zlib, ``-l`` lzo, ``-z`` zstd) at dump
levels 31 and 1: the wall time, CPU time (user + system of the process and its
children: the fair figure on a shared machine) and output size of makedumpfile
(Debian's 1.7.2, and 1.7.8 when unpacked under .cache/ as
testbed/15-fetch-newer-tools.sh does) and of ``kdumpkit save`` with one and two
threads, the ratios ours/theirs, and our peak RSS: anonymous, and whole (the
pages of the mapped input included; kdumpkit unmaps what it has read every
32 MiB, so both stay bounded whatever the input's size).  Wall and CPU are each
the best of ``--repeat`` runs.

Our runs get their bytecode cached (in a temporary PYTHONPYCACHEPREFIX, after
a warm-up run) as an installed package has it, even where the environment sets
PYTHONDONTWRITEBYTECODE.

    python3 bench/capture.py [--input vmcore.elf] [--repeat 3] [--levels 31,1]
                             [--codecs zlib,lzo,zstd] [--json out.json]
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
    """One measured command: best wall and best CPU of its runs, peak memory."""

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
    def cpu_ratio_1(self) -> float:
        return self.ours_1.cpu / self.theirs.cpu

    @property
    def cpu_ratio_2(self) -> float:
        return self.ours_2.cpu / self.theirs.cpu

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


def measure(argv: list[str], output: Path, repeat: int, env: dict[str, str] | None = None) -> Run:
    """Best wall time and best CPU time of ``repeat`` runs, the output's size and
    the child's peak RSS."""
    best: Run | None = None
    for _ in range(repeat):
        output.unlink(missing_ok=True)
        started = time.monotonic()
        proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env
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
        if best is None:
            best = run
        else:
            best = Run(
                min(run.seconds, best.seconds),
                run.size,
                max(run.max_rss_mb, best.max_rss_mb),
                max(run.max_anon_mb, best.max_anon_mb),
                min(run.cpu, best.cpu),
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


def our_env(pycache: Path) -> dict[str, str]:
    """The environment of our runs: bytecode cached under ``pycache``."""
    env = dict(os.environ, PYTHONPYCACHEPREFIX=str(pycache))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def bench(vmcore: Path, repeat: int, levels: tuple[int, ...], codecs: tuple[str, ...]) -> list[Row]:
    """Every (makedumpfile build, codec, level) row."""
    rows = []
    tools = makedumpfiles()
    if not tools:
        raise SystemExit("makedumpfile is not installed")
    with tempfile.TemporaryDirectory(prefix="kdumpkit-bench-") as tmp:
        out = Path(tmp) / "out"
        env = our_env(Path(tmp) / "pycache")
        measure(our_argv(vmcore, out, 31, "lzo", 1), out, 1, env)  # warm-up: bytecode
        ours_cache: dict[tuple[str, int], tuple[Run, Run]] = {}
        for tool, argv in tools.items():
            for flag, codec in CODECS.items():
                if codec not in codecs or not supports(argv, flag):
                    continue
                for level in levels:
                    theirs = measure([*argv, flag, "-d", str(level), str(vmcore), str(out)], out,
                                     repeat)  # fmt: skip
                    if (codec, level) not in ours_cache:
                        ours_cache[(codec, level)] = (
                            measure(our_argv(vmcore, out, level, codec, 1), out, repeat, env),
                            measure(our_argv(vmcore, out, level, codec, 2), out, repeat, env),
                        )
                    ours_1, ours_2 = ours_cache[(codec, level)]
                    rows.append(Row(tool, codec, level, theirs, ours_1, ours_2))
                    print(format_row(rows[-1]), flush=True)
    return rows


HEADER = (
    f"{'tool':<19} {'codec':<5} {'-d':>3} | {'wall s: th':>10} {'1t':>5} {'2t':>5} "
    f"{'1t/th':>6} {'2t/th':>6} | {'cpu s: th':>9} {'1t':>5} {'2t':>5} {'1t/th':>6} "
    f"{'2t/th':>6} | {'MB: th':>7} {'ours':>6} {'ratio':>6} | {'anon MB':>7} {'RSS MB':>6}"
)


def format_row(row: Row) -> str:
    """One line of the table: ratios are ours / makedumpfile's (below 1: we are faster)."""
    return (
        f"{row.tool:<19} {row.codec:<5} {row.level:>3} | {row.theirs.seconds:>10.2f} "
        f"{row.ours_1.seconds:>5.2f} {row.ours_2.seconds:>5.2f} {row.time_ratio_1:>6.2f} "
        f"{row.time_ratio_2:>6.2f} | {row.theirs.cpu:>9.2f} {row.ours_1.cpu:>5.2f} "
        f"{row.ours_2.cpu:>5.2f} {row.cpu_ratio_1:>6.2f} {row.cpu_ratio_2:>6.2f} | "
        f"{row.theirs.size / 1e6:>7.2f} {row.ours_1.size / 1e6:>6.2f} {row.size_ratio:>6.3f} | "
        f"{max(row.ours_1.max_anon_mb, row.ours_2.max_anon_mb):>7.1f} "
        f"{max(row.ours_1.max_rss_mb, row.ours_2.max_rss_mb):>6.1f}"
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
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--levels", default="31,1", help="dump levels, comma-separated")
    parser.add_argument("--codecs", default="zlib,lzo,zstd", help="codecs, comma-separated")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not args.input.exists():
        print(f"{args.input}: missing (run the tests once to decompress the fixture)")
        return 2
    print(f"input {args.input} ({args.input.stat().st_size / 1e6:.0f} MB), best of {args.repeat}")
    print(filter_rate(args.input, args.repeat), flush=True)
    print(HEADER, flush=True)
    levels = tuple(int(level) for level in args.levels.split(","))
    rows = bench(args.input, args.repeat, levels, tuple(args.codecs.split(",")))
    print("ratios are ours / makedumpfile's: below 1 we are faster or smaller; anon MB is our "
          "peak RssAnon, RSS MB includes the mapped input")  # fmt: skip
    if args.json:
        records = [
            dict(asdict(r), time_ratio_1=r.time_ratio_1, time_ratio_2=r.time_ratio_2,
                 cpu_ratio_1=r.cpu_ratio_1, cpu_ratio_2=r.cpu_ratio_2, size_ratio=r.size_ratio)
            for r in rows
        ]  # fmt: skip
        args.json.write_text(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
