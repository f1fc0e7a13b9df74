"""arm64 dumps on this x86_64 host: capture and open + backtrace, side by side with the peers.

* capture: ``save -d 31`` (zstd) of the 6.1 kdump's raw /proc/vmcore by kdumpkit and by sid's
  arm64 makedumpfile 1.7.8 under qemu-user (its time is inflated by the emulation);
* open + the panic CPU's backtrace: kdumpkit with no vmlinux (6.12: BTF + kallsyms) and with
  the DWARF vmlinux (6.1: its kallsyms lists no variables), drgn 0.3.0 with the DWARF vmlinux
  on the host (native: the fair comparison), each in a fresh interpreter.
crash 9.0.2 under qemu-user needs minutes to start (gdb reading the DWARF under emulation):
its start-up is read from the testbed's ``cmd-times.txt`` rather than run here.

    python3 bench/arm64.py [--repeat 3] [--json out]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("KDUMPKIT_CACHE", ROOT / ".cache"))
TB = CACHE / "testbed-arm64"
K61, K612 = "6.1.0-56-cloud-arm64", "6.12.117+deb12-cloud-arm64"

OURS_SAVE = """
import sys
from kdumpkit.dump.open import open_dump
from kdumpkit.capture.save import save_dump
with open_dump(sys.argv[1]) as src:
    save_dump(src, sys.argv[2], dump_level=31, compress="zstd", threads=1)
"""
OURS_BT = """
import sys
from kdumpkit.analyze.program import open_program
from kdumpkit.analyze.stack import panic_cpu, stack_trace
prog = open_program(sys.argv[1], vmlinux=sys.argv[2] or None)
assert stack_trace(prog, panic_cpu(prog))
"""
DRGN_BT = """
import sys, drgn
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
prog.load_debug_info([sys.argv[2]], default=False, main=True)
assert prog.crashed_thread().stack_trace()
"""


def vmlinux(kver: str) -> Path:
    return TB / "arm64/kernels" / kver / "usr/lib/debug/boot" / f"vmlinux-{kver}"


def best(argv: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(
            argv, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
        )
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    rows: dict[str, float | str] = {}
    elf61 = TB / f"kdump-{K61}-load" / "vmcore.elf"
    tools = TB / "arm64/tools-sid"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        rows["save -d 31 zstd, 6.1 (kdumpkit)"] = best(
            [sys.executable, "-c", OURS_SAVE, str(elf61), str(out)], args.repeat
        )
        ldso = tools / (tools / "LDSO").read_text().strip()
        libs = f"{tools}/lib/aarch64-linux-gnu:{tools}/usr/lib/aarch64-linux-gnu"
        mdf = ["qemu-aarch64-static", str(ldso), "--library-path", libs]
        mdf += [str(tools / "usr/bin/makedumpfile"), "-z", "-d", "31", str(elf61)]
        out.unlink(missing_ok=True)
        rows["save -d 31 zstd, 6.1 (makedumpfile 1.7.8, qemu-user)"] = best(
            [*mdf, str(Path(tmp) / "theirs")], 1
        )
    cases = [
        ("6.12 kdump, no vmlinux (kdumpkit)", TB / f"kdump-{K612}-load" / "vmcore.elf", ""),
        (
            "6.12 -cpu max, no vmlinux (kdumpkit)",
            TB / f"kdump-{K612}-load-cpumax" / "vmcore.elf",
            "",
        ),
        (
            "6.1 kdump, vmlinux (kdumpkit)",
            TB / f"kdump-{K61}-load" / "vmcore.kdump",
            str(vmlinux(K61)),
        ),
    ]
    for label, dump, vml in cases:
        rows[f"open + bt, {label}"] = best(
            [sys.executable, "-c", OURS_BT, str(dump), vml], args.repeat
        )
    for kver, dump in (
        (K612, TB / f"kdump-{K612}-load" / "vmcore.elf"),
        (K61, TB / f"kdump-{K61}-load" / "vmcore.kdump"),
    ):
        rows[f"open + bt, {kver} (drgn 0.3.0 + DWARF)"] = best(
            [sys.executable, "-c", DRGN_BT, str(dump), str(vmlinux(kver))], args.repeat
        )
    times = TB / f"kdump-{K61}-load" / "crash-9.0.2" / "vmcore.kdump" / "cmd-times.txt"
    if times.exists():
        rows["crash 9.0.2 start-up + bt, 6.1 (qemu-user, from the testbed)"] = " ".join(
            line.split()[1]
            for line in times.read_text().splitlines()
            if line.split()[0] in ("startup", "bt")
        )
    for label, value in rows.items():
        print(f"{label:70} {value if isinstance(value, str) else f'{value:7.2f} s'}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
