"""The analysis adapter's child process and its limits, on the real 6.1 fixture."""

from __future__ import annotations

from pathlib import Path

from kdumpkit.server.analysis import DONE, FAILED, UNREADABLE, analyse


def test_report_and_commands(kdump61: Path) -> None:
    result = analyse(str(kdump61), ("sys", "bt", "no-such-command"), 120, 4 << 30)
    assert result.status == DONE and result.error is None
    assert "RELEASE: 6.1.0-56-cloud-amd64" in result.commands["sys"]
    assert "sysrq_handle_crash" in result.commands["bt"]
    assert result.commands["no-such-command"] == "crash: command not found: no-such-command\n"
    assert result.dmesg and "sysrq: Trigger a crash" in result.dmesg
    assert result.facts is not None and result.facts.release == "6.1.0-56-cloud-amd64"


def test_time_limit(kdump61: Path) -> None:
    result = analyse(str(kdump61), ("foreach bt",), 0.05, 4 << 30)
    assert (result.status, result.error) == (FAILED, "analysis took longer than 0.05 s")


def test_memory_limit(kdump61: Path) -> None:
    result = analyse(str(kdump61), (), 120, 48 << 20)
    assert result.status == FAILED and result.error is not None
    assert "\n" not in result.error and "Traceback" not in result.error
    assert result.error.startswith("analysis ran out of memory (limit 48 MiB)")


def test_unreadable(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    result = analyse(str(empty), (), 60, 4 << 30)
    assert result.status == UNREADABLE and result.error and "\n" not in result.error
