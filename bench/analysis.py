"""Analysis speed: open a dump + ``bt`` of the panic task, and the triage ``report``.

Our figures are measured in a fresh process each time (imports included, as a user
pays them) and, inside one process, split into open / bt / report.  With a DWARF
vmlinux (``--vmlinux``) the same work is timed with crash and with drgn, side by
side; without one their rows say "skipped: no vmlinux".  Each figure is the best
of ``--repeat`` runs (the machine is shared).

    python3 bench/analysis.py [--dump vmcore.kdump] [--vmlinux VMLINUX] [--crash CMD]
                              [--repeat 3] [--tool-repeat 1] [--json out]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("KDUMPKIT_FIXTURES", ROOT.parent / "shared" / "fixtures"))
DEFAULT_DUMP = FIXTURES / "linux-6.1.0-56-cloud-amd64-kdump" / "vmcore.kdump"

#: our open + bt, in a fresh interpreter
OURS_BT = """
import sys
from kdumpkit.analyze.program import open_program
from kdumpkit.analyze.session import Session
prog = open_program(sys.argv[1], vmlinux=sys.argv[2] or None)
Session(prog).run_to_text("bt")
"""
OURS_REPORT = """
import sys
from kdumpkit.analyze.program import open_program
from kdumpkit.analyze.report import gather_report, render_text
prog = open_program(sys.argv[1], vmlinux=sys.argv[2] or None)
render_text(gather_report(prog))
"""
#: commands timed one by one, each its first run on a fresh program
COMMANDS = ("sys", "ps", "log", "mod", "kmem -i", "runq", "bt -a")
DRGN_BT = """
import sys, drgn
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
prog.load_debug_info([sys.argv[2]])
str(prog.crashed_thread().stack_trace())
"""


def best_wall(command: list[str], repeat: int, stdin: str | None = None) -> float | None:
    """The best wall time of a command over ``repeat`` runs, or None if it failed."""
    best = None
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(
            command, input=stdin, capture_output=True, text=True, env=env, check=False, timeout=600
        )
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            print(
                f"  {command[0]} failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr
            )
            return None
        best = elapsed if best is None else min(best, elapsed)
    return best


#: the command lines a user types, timed as fresh processes (wall and user+sys CPU)
CLI_RUNS = (
    ("crash -c bt", ["crash", "{dump}", "-c", "bt"]),
    ("report", ["report", "{dump}"]),
    ("crash -c ps", ["crash", "{dump}", "-c", "ps"]),
)


def best_cli(argv: list[str], repeat: int) -> tuple[float, float] | None:
    """``python -m kdumpkit ARGV``: the best wall time over ``repeat`` runs, and the
    user+sys CPU of the run with the least CPU (the machine may be shared)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    best_wall_time = best_cpu = None
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "kdumpkit", *argv],
            capture_output=True,
            env=env,
            check=False,
            timeout=600,
        )
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            print(f"  kdumpkit {' '.join(argv)} failed", file=sys.stderr)
            return None
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        best_wall_time = elapsed if best_wall_time is None else min(best_wall_time, elapsed)
        best_cpu = cpu if best_cpu is None else min(best_cpu, cpu)
    assert best_wall_time is not None and best_cpu is not None
    return best_wall_time, best_cpu


def in_process(dump: Path, vmlinux: str | None, repeat: int) -> dict[str, float]:
    """open / bt / report split, best of ``repeat``, after imports are paid."""
    sys.path.insert(0, str(ROOT))
    from kdumpkit.analyze.program import open_program
    from kdumpkit.analyze.report import gather_report, render_text
    from kdumpkit.analyze.session import Session

    best: dict[str, float] = {}
    for _ in range(repeat):
        times = {}
        start = time.perf_counter()
        prog = open_program(dump, vmlinux=vmlinux)
        times["open"] = time.perf_counter() - start
        start = time.perf_counter()
        Session(prog).run_to_text("bt")
        times["bt"] = time.perf_counter() - start
        prog = open_program(dump, vmlinux=vmlinux)
        start = time.perf_counter()
        render_text(gather_report(prog))
        times["report (after open)"] = time.perf_counter() - start
        session = Session(open_program(dump, vmlinux=vmlinux))
        for command in COMMANDS:
            start = time.perf_counter()
            session.run_to_text(command)
            times[f"{command} (first run)"] = time.perf_counter() - start
        for key, value in times.items():
            best[key] = min(best.get(key, value), value)
    return best


def crash_command(given: str | None) -> list[str] | None:
    """The crash to run: as given, the testbed's unpacked crash 9.0.2, or PATH's."""
    if given:
        return shlex.split(given)
    root = ROOT / ".cache" / "oracle" / "tools-sid"
    if (root / "usr" / "bin" / "crash").is_file():
        # its own glibc and libraries, as /work/shared/testbed/crash-debian.sh runs it
        return [
            str(root / "usr/lib64/ld-linux-x86-64.so.2"),
            "--library-path",
            str(root / "usr/lib/x86_64-linux-gnu"),
            str(root / "usr/bin/crash"),
        ]
    found = shutil.which("crash")
    return [found] if found else None


def main() -> int:
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dump", type=Path, default=DEFAULT_DUMP)
    parser.add_argument("--vmlinux", help="a DWARF vmlinux: also time crash and drgn")
    parser.add_argument(
        "--crash",
        help="the crash command (default: crash 9.0.2 unpacked by "
        "the testbed under .cache/oracle/tools-sid, else crash on PATH)",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--tool-repeat",
        type=int,
        default=1,
        help="runs of crash and drgn (slow: a DWARF load each)",
    )
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    if not args.dump.exists():
        print(f"skipped: {args.dump} not present", file=sys.stderr)
        return 0
    vmlinux = args.vmlinux or ""
    python = sys.executable
    results: dict[str, float | str | None] = {}
    for name, argv in CLI_RUNS:
        measured = best_cli([arg.format(dump=args.dump) for arg in argv], args.repeat)
        results[f"kdumpkit {name}, wall (fresh process)"] = measured and measured[0]
        results[f"kdumpkit {name}, user+sys CPU"] = measured and measured[1]
    results["kdumpkit open+bt, BTF (fresh process)"] = best_wall(
        [python, "-c", OURS_BT, str(args.dump), ""], args.repeat
    )
    results["kdumpkit open+report, BTF (fresh process)"] = best_wall(
        [python, "-c", OURS_REPORT, str(args.dump), ""], args.repeat
    )
    for key, value in in_process(args.dump, None, args.repeat).items():
        results[f"kdumpkit {key}, BTF (in process)"] = value
    if vmlinux:
        results["kdumpkit open+bt, DWARF (fresh process)"] = best_wall(
            [python, "-c", OURS_BT, str(args.dump), vmlinux], args.repeat
        )
        for key in ("open", "bt"):
            value = in_process(args.dump, vmlinux, args.repeat)[key]
            results[f"kdumpkit {key}, DWARF (in process)"] = value
    if not args.vmlinux:
        results["crash open+bt"] = "skipped: no vmlinux"
        results["drgn open+bt"] = "skipped: no vmlinux"
    else:
        crash = crash_command(args.crash)
        results["crash open+bt"] = (
            best_wall(
                [*crash, "-s", args.vmlinux, str(args.dump)], args.tool_repeat, stdin="bt\nexit\n"
            )
            if crash
            else "skipped: crash not installed"
        )
        results["drgn open+bt"] = best_wall(
            [python, "-c", DRGN_BT, str(args.dump), args.vmlinux], args.tool_repeat
        )
    print(f"dump: {args.dump}  vmlinux: {args.vmlinux or '(none)'}  best of {args.repeat}")
    for name, value in results.items():
        shown = f"{value:8.3f} s" if isinstance(value, float) else str(value)
        print(f"  {name:<48} {shown}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
