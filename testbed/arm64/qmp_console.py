#!/usr/bin/env python3
"""QMP driver for arm64 guests without pvpanic: watch the serial log for the panic, then dump.

Usage: qmp_console.py SOCKET OUTDIR CONSOLE_LOG [TIMEOUT_S]
Debian's arm64 cloud kernels have no pvpanic driver (CONFIG_PVPANIC unset), so QEMU never sees
GUEST_PANICKED. Instead this waits until CONSOLE_LOG shows "Kernel panic - not syncing" and then
"---[ end Kernel panic" (printed after the other CPUs are stopped and the panic notifiers ran;
the panicking CPU then spins in panic()'s delay loop), pauses the VM with `stop`, and runs
dump-guest-memory (paging=false) as the x86_64 testbed's qmp.py does: ELF -> vmcore.qemu.elf,
kdump-zlib -> vmcore.qemu.flat. Uses the QMP class of qmp.py (next to this file).
"""
import importlib.util
import json
import os
import sys
import time

_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("qmp", os.path.join(_here, "qmp.py"))
qmp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(qmp)


def wait_console(path, needles, deadline):
    """Return the time at which every needle has appeared in the file at path."""
    while time.time() < deadline:
        try:
            data = open(path, "rb").read()
        except FileNotFoundError:
            data = b""
        if all(n in data for n in needles):
            return time.time()
        time.sleep(0.2)
    raise TimeoutError(f"{needles} not seen in {path}")


def main():
    sock, outdir, console = sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3]
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 600
    t0 = time.time()
    q = qmp.QMP(sock, timeout)
    wait_console(console, [b"Kernel panic - not syncing"], t0 + timeout)
    print(f"console: 'Kernel panic - not syncing' after {time.time() - t0:.1f}s")
    try:
        wait_console(console, [b"---[ end Kernel panic"], time.time() + 30)
        print(f"console: '---[ end Kernel panic' after {time.time() - t0:.1f}s")
    except TimeoutError:
        print("console: no '---[ end Kernel panic' within 30s; dumping anyway")
    time.sleep(1)
    q.cmd("stop")
    print("status:", q.cmd("query-status"))
    for fmt, name in (("elf", "vmcore.qemu.elf"), ("kdump-zlib", "vmcore.qemu.flat")):
        t = time.time()
        try:
            q.cmd("dump-guest-memory", paging=False, protocol=f"file:{outdir}/{name}", format=fmt)
            print(f"dump-guest-memory format={fmt} -> {name}: {time.time() - t:.1f}s")
        except RuntimeError as e:
            print(f"dump-guest-memory format={fmt}: FAILED: {e}")
    try:
        q.cmd("quit")
    except (EOFError, OSError):
        pass


if __name__ == "__main__":
    main()
