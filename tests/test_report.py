"""The triage report on the real 6.1 dump, checked against crash 9.0.2's outputs."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("drgn")

from kdumpkit.analyze.facts.taint import decode_taint
from kdumpkit.analyze.report import (
    Report,
    ReportTask,
    crash_signature,
    gather_report,
    normalise_function,
    render_html,
    render_json,
    render_text,
)
from kdumpkit.analyze.stack import Frame


@pytest.fixture(scope="module")
def typed_report(kdump61: Path) -> Report:
    from kdumpkit.analyze.program import open_program

    return gather_report(open_program(kdump61))


@pytest.fixture(scope="module")
def report(typed_report: Report) -> dict[str, Any]:
    """The report's JSON form (what ``report --json`` prints)."""
    return typed_report.to_json()


def names(frames: list[dict[str, str]]) -> list[str]:
    return [frame["function"] for frame in frames]


def bt_functions(text: str) -> list[list[str]]:
    """The function names of each task block in a crash ``bt`` output."""
    blocks = []
    for block in text.split("\n\n"):
        blocks.append(re.findall(r"^\s*#\d+ \[[0-9a-f]+\] (\S+) at ", block, re.M))
    return blocks


def test_system_facts(report: dict[str, Any]) -> None:
    assert report["release"] == "6.1.0-56-cloud-amd64"
    assert report["version"] == "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)"
    assert report["machine"] == "x86_64"
    assert report["crash_date"] == "Thu Nov 26 08:41:23 UTC 2026"
    assert report["uptime"] == "00:00:05"
    assert report["panic"] == "Kernel panic - not syncing: sysrq triggered crash"
    assert report["errors"] == []


def test_backtraces_match_crash(report: dict[str, Any], fx61: Path) -> None:
    crash_blocks = bt_functions((fx61 / "crash-9.0.2" / "bt-a.txt").read_text())
    task = report["crashing_task"]
    assert (task["pid"], task["comm"], task["cpu"]) == (134, "testbed_crasher", 0)
    assert [f["function"] for f in task["backtrace"]] == crash_blocks[0]
    assert [(o["cpu"], o["pid"]) for o in report["other_cpus"]] == [(1, 126)]
    assert [f["function"] for f in report["other_cpus"][0]["backtrace"]] == crash_blocks[1]


def test_log_tail_and_modules(report: dict[str, Any], fx61: Path) -> None:
    log = (fx61 / "crash-9.0.2" / "log.txt").read_text().splitlines()
    assert report["log_tail"] == log[-50:]
    names = [
        line.split()[1] for line in (fx61 / "crash-9.0.2" / "mod.txt").read_text().splitlines()[1:]
    ]
    assert [m["name"] for m in report["modules"]] == names


def test_signature_drops_the_panic_machinery(report: dict[str, Any]) -> None:
    top = [
        "sysrq_handle_crash",
        "__handle_sysrq",
        "write_sysrq_trigger",
        "proc_reg_write",
        "vfs_write",
    ]
    assert report["signature"]["frames"] == top
    assert report["signature"]["sha256"] == hashlib.sha256("|".join(top).encode()).hexdigest()
    # offsets, compiler suffixes and the kexec/NMI frames do not change it
    frames = [
        {"function": n}
        for n in (
            "machine_kexec",
            "__crash_kexec",
            "panic+0x13d",
            "sysrq_handle_crash+0x16",
            "__handle_sysrq.cold",
            "write_sysrq_trigger.isra.0",
            "proc_reg_write",
            "vfs_write",
            "ksys_write",
        )
    ]
    assert crash_signature(names(frames), None).sha256 == report["signature"]["sha256"]
    # a hypervisor's dump of the same crash: panic notifiers ran inside panic()
    notified = [
        {"function": n}
        for n in (
            "pvpanic_send_event.part.0",
            "pvpanic_panic_notify",
            "notifier_call_chain",
            "atomic_notifier_call_chain",
            "panic",
            "sysrq_handle_crash",
            "__handle_sysrq",
            "write_sysrq_trigger",
            "proc_reg_write",
            "vfs_write",
            "ksys_write",
            "do_syscall_64",
            "entry_SYSCALL_64_after_hwframe",
        )
    ]
    assert crash_signature(names(notified), None).sha256 == report["signature"]["sha256"]
    # an oops: the faulting function comes first, whatever the exception path was
    oops = [
        {"function": n}
        for n in (
            "machine_kexec",
            "__crash_kexec",
            "crash_kexec",
            "oops_end",
            "page_fault_oops",
            "exc_page_fault",
            "asm_exc_page_fault",
            "brd_probe",
            "blk_request_module",
        )
    ]
    assert crash_signature(names(oops), None).frames == ["brd_probe", "blk_request_module"]


def test_taint_letters_as_the_kernel_prints_them(report: dict[str, Any]) -> None:
    assert report["taint"] == {"mask": 0, "letters": "", "flags": [], "tainted": False}
    # "Tainted: G           OE" is what an out-of-tree unsigned module gives
    assert decode_taint((1 << 12) | (1 << 13)).letters == "G           OE"
    assert decode_taint((1 << 0) | (1 << 9)).letters == "P        W"
    assert decode_taint(1 << 9).flags == ["W"]
    assert normalise_function("foo.constprop.0+0x10") == "foo"


def test_renderings(typed_report: Report, report: dict[str, Any]) -> None:
    text = render_text(typed_report)
    assert "panic: Kernel panic - not syncing: sysrq triggered crash" in text
    assert "#10 [ffffd186803f3f50] entry_SYSCALL_64_after_hwframe at ffffffff84e00126" in text
    assert json.loads(render_json(typed_report)) == report
    page = render_html(typed_report)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "&lt;TASK&gt;" in page  # log text is escaped


def test_report_without_types_keeps_the_essentials(kdump61: Path, report: dict[str, Any]) -> None:
    from test_commands_kallsyms import bare_program

    typed_bare = gather_report(bare_program(kdump61))
    bare = typed_bare.to_json()
    for key in ("release", "version", "machine", "crash_date", "uptime", "panic"):
        assert bare[key] == report[key], key
    assert bare["signature"] == report["signature"]
    crashing = bare["crashing_task"]
    assert (crashing["pid"], crashing["comm"], crashing["cpu"]) == (134, "testbed_crasher", 0)
    assert [f["function"] for f in crashing["backtrace"]] == [
        f["function"] for f in report["crashing_task"]["backtrace"]
    ]
    assert [(o["cpu"], o["pid"]) for o in bare["other_cpus"]] == [(1, 126)]
    assert bare["log_tail"] == report["log_tail"]
    assert 'Crashing task: PID 134 "testbed_crasher" on CPU 0' in render_text(typed_bare)


def test_text_backtraces_read_like_crash_bt(typed_report: Report, fx61: Path) -> None:
    blocks = render_text(typed_report).split("\n\n")
    crash_blocks = (fx61 / "crash-9.0.2" / "bt-a.txt").read_text().rstrip("\n").split("\n\n")
    crashing = next(b for b in blocks if b.startswith("Crashing task:"))
    other = next(b for b in blocks if b.startswith("CPU 1:"))
    # frames and exception registers exactly as crash prints them; only the header differs
    assert crashing.splitlines()[1:] == crash_blocks[0].splitlines()[1:]
    assert other.splitlines()[1:] == crash_blocks[1].splitlines()[1:]


def test_blocked_tasks_are_crash_ps_un_tasks(
    typed_report: Report, report: dict[str, Any], fx61: Path
) -> None:
    ps = (fx61 / "crash-9.0.2" / "ps.txt").read_text().splitlines()
    uninterruptible = [line for line in ps if line.split()[4:5] == ["UN"]]
    assert report["blocked_count"] == len(uninterruptible) == 0
    assert report["live"] is False
    assert "Blocked tasks (uninterruptible sleep): none" in render_text(typed_report)


def test_live_report_has_no_crash_parts() -> None:
    frame = Frame(pc=0xFFFFFFFF81000010, sp=0xFF00, function="wait_for_vfork_done", offset=0x10)
    blocked = ReportTask(pid=200, comm="vforker", task=0xAB00, cpu=1, backtrace=[frame])
    live = Report(
        live=True, release="6.12.0", version="#1", machine="x86_64", cpus=2,
        crash_time=1795707554, uptime_seconds=27, panic=None,
        running=[ReportTask(pid=190, comm="python", task=0xCD00, cpu=1)],
        blocked_tasks=[blocked], blocked_count=12,
    )  # fmt: skip
    assert live.crash_date == "Thu Nov 26 15:39:14 UTC 2026" and live.uptime == "00:00:27"
    text = render_text(live)
    assert text.startswith("LIVE KERNEL REPORT")
    assert "        time: Thu Nov 26 15:39:14 UTC 2026" in text
    for absent in ("panic:", "signature:", "Crashing task", "crash time"):
        assert absent not in text, absent
    assert 'Running on CPU 1: PID 190 "python" (task cd00)' in text
    assert "Blocked tasks (uninterruptible sleep): 12\n  (the first 1 shown)\n" in text
    assert 'Blocked: PID 200 "vforker" on CPU 1 (task ab00)\n' in text
    assert " #0 [ff00] wait_for_vfork_done at ffffffff81000010" in text
    assert "<title>Live kernel: 6.12.0</title>" in render_html(live)
