"""The live kernel: `kdumpkit crash /proc/kcore` and `kdumpkit report /proc/kcore` inside a
running Debian guest, with no vmlinux (BTF from /sys/kernel/btf, symbols from /proc/kallsyms)."""

from __future__ import annotations

import re

import pytest
from testbed_support import testbed

pytestmark = pytest.mark.e2e


def test_crash_commands_on_the_running_kernel(live_guest: testbed.LiveResult) -> None:
    assert live_guest.crash_rc == 0, live_guest.crash_output[-2000:]
    out = live_guest.crash_output
    assert f"     RELEASE: {live_guest.release}\n" in out
    assert "    DUMPFILE: /proc/kcore\n" in out
    assert "PANIC:" not in out
    ps = {fields[8]: int(fields[0]) for fields in map(str.split, out.splitlines())
          if len(fields) == 9 and fields[0].isdigit()}  # fmt: skip
    assert ps["testbed_sleeper"] == live_guest.sleeper_pid
    assert {"testbed_fifo", "testbed_vforker"} <= ps.keys()
    assert "TESTBED marker: kdumpkit testbed on " in out
    bt = out[out.index(f"PID: {live_guest.sleeper_pid} ") :]
    frames = re.findall(r"^ *#\d+ \[[0-9a-f]+\] (\S+) at ", bt, re.M)
    assert "do_nanosleep" in frames and frames[0] == "__schedule", frames


def test_report_on_the_running_kernel_shows_the_blocked_task(
    live_guest: testbed.LiveResult,
) -> None:
    assert live_guest.report_rc == 0, live_guest.report_output[-2000:]
    text = live_guest.report_output
    assert text.startswith("LIVE KERNEL REPORT")
    assert f"     release: {live_guest.release}\n" in text
    assert "signature:" not in text and "Crashing task" not in text
    assert re.search(r"^Running on CPU 0: PID \d+ ", text, re.M)
    # The vfork() parent waits uninterruptibly for its sleeping child.
    block = re.search(r'^Blocked: PID \d+ "testbed_vforker".*?(?:\n\n|\Z)', text, re.M | re.S)
    assert block is not None, text
    assert "vfork" in block.group(), block.group()
