"""The real end-to-end: Debian's kernel under QEMU, kdump armed by kdumpkit, sysrq-c, the
capture kernel saves the dump with kdumpkit, and the reference tools read what it saved."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from testbed_support import ROOT, testbed

pytestmark = pytest.mark.e2e

PANIC_LINES = ("sysrq: Trigger a crash", "Kernel panic - not syncing: sysrq triggered crash")
MARKER = "TESTBED marker: kdumpkit testbed on "


def has_verb(verb: str) -> bool:
    """Whether the tree has ``kdumpkit <verb>`` yet."""
    return importlib.util.find_spec(f"kdumpkit.cli.{verb}") is not None


def kdumpkit(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m kdumpkit ARGS`` from the project, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "kdumpkit", *args],
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=300,
    )


def dump_files(result: testbed.CycleResult) -> tuple[Path, Path]:
    """The collector's ``<dir>/<stamp>/dump.<stamp>`` and ``dmesg.<stamp>``."""
    folders = result.dump_dirs()
    assert len(folders) == 1, f"expected one <stamp> folder in {result.out_dir}: {folders}"
    stamp = folders[0].name
    return folders[0] / f"dump.{stamp}", folders[0] / f"dmesg.{stamp}"


def assert_crash_log(text: str, release: str) -> None:
    for line in PANIC_LINES:
        assert line in text
    assert MARKER + release in text


def test_cycle_completes(kdump_cycle: testbed.CycleResult) -> None:
    assert kdump_cycle.load_rc == 0, (kdump_cycle.out_dir / "load.log").read_text()
    assert kdump_cycle.collect_rc == 0, (kdump_cycle.out_dir / "collect.log").read_text()
    console = kdump_cycle.console_path.read_text(errors="replace")
    assert "Kernel panic - not syncing: sysrq triggered crash" in console
    assert "capture kernel up" in console


def test_kdumpkit_load_armed_kdump(kdump_cycle: testbed.CycleResult) -> None:
    # The guest hides kexec-tools: the kernel says kexec_file_load loaded the capture kernel.
    log = (kdump_cycle.out_dir / "load.log").read_text()
    assert "loaded (via kexec_file_load)" in log, log
    console = kdump_cycle.console_path.read_text(errors="replace")
    assert "kexec-tools still visible" not in console
    assert re.search(r"load done: loader=kdumpkit rc=0 kexec_crash_loaded=1", console)


def test_kdumpkit_collect_saved_dump(kdump_cycle: testbed.CycleResult) -> None:
    dump, dmesg = dump_files(kdump_cycle)
    log = (kdump_cycle.out_dir / "collect.log").read_text()
    assert f"saved the dump to {dump}" in log, log
    assert f"saved the kernel log to {dmesg}" in log, log


def test_layout(kdump_cycle: testbed.CycleResult) -> None:
    dump, dmesg = dump_files(kdump_cycle)
    assert re.fullmatch(r"[0-9]{12}([0-9]{2})?|[0-9T:-]+", dump.parent.name), dump.parent.name
    assert dump.stat().st_size > 1 << 20
    assert dmesg.stat().st_size > 0


def test_saved_dmesg_holds_the_panic(kdump_cycle: testbed.CycleResult) -> None:
    _, dmesg = dump_files(kdump_cycle)
    assert_crash_log(dmesg.read_text(errors="replace"), kdump_cycle.release)


@pytest.mark.skipif(shutil.which("makedumpfile") is None, reason="makedumpfile not installed")
def test_makedumpfile_reads_dump(kdump_cycle: testbed.CycleResult, tmp_path: Path) -> None:
    dump, _ = dump_files(kdump_cycle)
    out = tmp_path / "dmesg.txt"
    done = subprocess.run(
        ["makedumpfile", "--dump-dmesg", str(dump), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    reference = out.read_text(errors="replace")
    assert_crash_log(reference, kdump_cycle.release)
    # kdumpkit's log is makedumpfile's byte for byte: 1.7.2 (Debian 12) prints no caller
    # ids, 1.7.8 does.
    renderings = [
        kdumpkit("dmesg", flag, str(dump)).stdout for flag in ("--no-caller-id", "--caller-id")
    ]
    assert reference in renderings, "kdumpkit dmesg differs from makedumpfile --dump-dmesg"


def test_kdumpkit_info_reads_dump(kdump_cycle: testbed.CycleResult) -> None:
    dump, _ = dump_files(kdump_cycle)
    done = kdumpkit("info", str(dump))
    assert done.returncode == 0, done.stderr
    assert kdump_cycle.release in done.stdout


def test_kdumpkit_dmesg_reads_dump(kdump_cycle: testbed.CycleResult) -> None:
    dump, _ = dump_files(kdump_cycle)
    done = kdumpkit("dmesg", str(dump))
    assert done.returncode == 0, done.stderr
    assert_crash_log(done.stdout, kdump_cycle.release)


def test_check_before_and_after_load(kdump_cycle: testbed.CycleResult) -> None:
    before = (kdump_cycle.out_dir / "check-before.txt").read_text()
    after = (kdump_cycle.out_dir / "check-after.txt").read_text()
    # The guest appends check's exit status and the kernel's own answer (sysfs).
    assert re.fullmatch(r"rc=[1-9]\d* kexec_crash_loaded=0", before.splitlines()[-1]), before
    assert after.splitlines()[-1] == "rc=0 kexec_crash_loaded=1", after
    # check's lines: "<OK|WARN|FAIL>  <topic>  <finding>"; only the load changes between them.
    assert re.search(r"^FAIL\s+capture kernel\s+not loaded", before, re.MULTILINE), before
    assert re.search(r"^OK\s+capture kernel\s+loaded", after, re.MULTILINE), after
    assert not re.search(r"^FAIL", after, re.MULTILINE), after
    assert "ready for kdump" in after.splitlines()[-2], after


def crash_json(dump: Path, *commands: str) -> dict[str, list[dict]]:
    """``kdumpkit crash --json -c CMD...`` on the dump, parsed."""
    args = ["crash", "--json"]
    for command in commands:
        args += ["-c", command]
    done = kdumpkit(*args, str(dump))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_testbed_tasks_and_their_stacks(kdump_cycle: testbed.CycleResult) -> None:
    if not has_verb("crash"):
        pytest.skip("kdumpkit crash is not in the tree yet")
    dump, _ = dump_files(kdump_cycle)
    tasks = {row["comm"]: row for row in crash_json(dump, "ps")["ps"]}
    crasher, sleeper, fifo = (
        tasks[name] for name in ("testbed_crasher", "testbed_sleeper", "testbed_fifo")
    )
    assert crasher["active"] and crasher["state"] == "RU"
    assert sleeper["state"] == "IN" and fifo["state"] == "IN"
    commands = [f"bt {task['pid']}" for task in (crasher, sleeper, fifo)]
    traces = crash_json(dump, *commands)

    def functions(command: str) -> list[str]:
        return [frame["function"] for frame in traces[command][0]["frames"]]

    # What each task was doing, innermost first, as the kernel's own console trace shows.
    expected = {
        commands[0]: ["panic", "sysrq_handle_crash", "write_sysrq_trigger", "vfs_write"],
        commands[1]: ["schedule", "do_nanosleep", "hrtimer_nanosleep"],
        commands[2]: ["schedule", "wait_for_partner", "fifo_open"],
    }
    for command, chain in expected.items():
        seen = functions(command)
        positions = [seen.index(name) for name in chain if name in seen]
        assert len(positions) == len(chain) and positions == sorted(positions), (command, seen)


def test_kdumpkit_report_names_the_crash(kdump_cycle: testbed.CycleResult) -> None:
    if not has_verb("report"):
        pytest.skip("kdumpkit report is not in the tree yet")
    dump, _ = dump_files(kdump_cycle)
    done = kdumpkit("report", str(dump))
    assert done.returncode == 0, done.stderr
    assert "Kernel panic - not syncing: sysrq triggered crash" in done.stdout
    assert re.search(r'Crashing task: PID \d+ "testbed_crasher"', done.stdout), done.stdout[:2000]
    assert "sysrq_handle_crash" in done.stdout
