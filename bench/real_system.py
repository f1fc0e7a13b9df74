"""kdumpkit against Debian's kdump-tools on the same real Debian 12 system (testbed/system):
the reservation each makes, the time from panic to the dump saved and to the login prompt
again, the dump's size, and kdumpkit's peak memory in the capture kernel.

    python3 bench/real_system.py [--out DIR]

Both run under QEMU's TCG on this machine; the times are the guest's, so compare them with
each other, never with a real server's.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "testbed" / "system"))

import cycle  # noqa: E402

STAGES = ("panic → capture kernel starts", "panic → dump saved", "panic → login prompt again")


def reserved(cmdline: str) -> str:
    match = re.search(r"crashkernel=(\S+)", cmdline)
    return match.group(1) if match else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-real-system-"))
    ours = cycle.kdumpkit_cycle(out / "kdumpkit", faults=False)
    theirs = cycle.kdump_tools_cycle(out / "kdump-tools")
    rows = [("", "kdumpkit", "kdump-tools")]
    rows.append(
        ("crashkernel=", reserved(ours.outputs["cmdline"]), reserved(theirs.outputs["cmdline"]))
    )
    for stage in STAGES:
        rows.append((stage, f"{ours.stages[stage]:.0f} s", f"{theirs.stages[stage]:.0f} s"))
    sizes = []
    for folder in (out / "kdumpkit", out / "kdump-tools"):
        dumps = [p for p in (folder / "crash").rglob("dump.*") if p.is_file()]
        sizes.append(f"{sum(p.stat().st_size for p in dumps) / 2**20:.1f} MiB" if dumps else "-")
    rows.append(("dump size", *sizes))
    peak = re.search(r"peak memory (\d+) MiB", ours.outputs["collect"])
    rows.append(("collector's peak memory", f"{peak.group(1)} MiB" if peak else "-", "-"))
    width = max(len(r[0]) for r in rows)
    for name, a, b in rows:
        print(f"{name:<{width}}  {a:>14}  {b:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
