"""The analysis verbs end to end: ``kdumpkit crash``, ``report`` and ``shell``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

pytest.importorskip("drgn")

from kdumpkit.cli.main import main


def test_crash_runs_each_c_command(
    kdump61: Path, fx61: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["crash", str(kdump61), "-c", "ps", "-c", "mod"]) == 0
    out = capsys.readouterr().out
    crash = fx61 / "crash-9.0.2"
    assert out == (crash / "ps.txt").read_text() + (crash / "mod.txt").read_text()


def test_crash_banner_is_crash_startup(
    kdump61: Path, fx61: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["crash", str(kdump61), "--banner", "-c", "exit"]) == 0
    out = capsys.readouterr().out.splitlines()
    startup = (fx61 / "crash-9.0.2" / "startup.txt").read_text().splitlines()
    # from CPUS: to the end of the panic-task block, crash's start-up lines exactly
    first = startup.index("        CPUS: 2")
    last = startup.index("       STATE: TASK_RUNNING (PANIC)")
    start = out.index("        CPUS: 2")
    assert out[start : start + last - first + 1] == startup[first : last + 1]


def test_crash_reads_commands_from_a_pipe(
    kdump61: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("sym panic\nnosuch\nexit\nsym panic\n"))
    assert main(["crash", str(kdump61), "-s"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "ffffffff84bccf31 (T) panic\n"
    assert captured.err == "crash: command not found: nosuch\n"


def test_crash_command_errors_set_the_status(
    kdump61: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["crash", str(kdump61), "-c", "rd 0"]) == 1
    assert capsys.readouterr().err == (
        'rd: invalid kernel virtual address: 0  type: "64-bit KVADDR"\n'
    )


def test_report_json(kdump61: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    assert main(["report", str(kdump61), "--json", "-o", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["crashing_task"]["pid"] == 134
    assert report["panic"] == "Kernel panic - not syncing: sysrq triggered crash"


def test_report_text_and_html(kdump61: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(kdump61)]) == 0
    assert 'Crashing task: PID 134 "testbed_crasher"' in capsys.readouterr().out
    assert main(["report", str(kdump61), "--html"]) == 0
    assert capsys.readouterr().out.startswith("<!DOCTYPE html>")


def test_shell_expression(kdump61: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = "print(prog['init_task'].comm.string_().decode(), len(list(for_each_task())))"
    assert main(["shell", str(kdump61), "-e", code]) == 0
    assert capsys.readouterr().out == "swapper/0 58\n"


@pytest.mark.parametrize("verb", ["crash", "report", "shell"])
def test_bad_dump_is_one_line(
    verb: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"this is not a crash dump" * 100)
    assert main([verb, str(junk)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"kdumpkit {verb}: ")
    assert main([verb, str(tmp_path / "missing")]) in (1, 2)
    assert capsys.readouterr().err.count("\n") == 1


def test_truncated_dump_is_one_line(
    kdump61: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truncated = tmp_path / "truncated.kdump"
    with open(kdump61, "rb") as source:
        truncated.write_bytes(source.read(3 << 20))
    status = main(["crash", str(truncated), "-c", "ps"])
    captured = capsys.readouterr()
    if status == 0:  # enough survived to open: the command ran or reported one error
        assert "Traceback" not in captured.err
    else:
        assert status == 2 and captured.err.count("\n") == 1


def test_crash_json_records(kdump61: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crash", str(kdump61), "--json", "-c", "ps 134", "-c", "rd 0"]) == 1
    records = json.loads(capsys.readouterr().out)
    assert records["ps 134"][0]["comm"] == "testbed_crasher"
    assert records["ps 134"][0]["rss_kb"] == 1108
    assert "invalid kernel virtual address" in records["rd 0"]["error"]


def test_crash_input_file(
    kdump61: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "cmds"
    script.write_text("# a comment\nsym panic\n\nsym ffffffff84bcd06e\nexit\nsym jiffies\n")
    assert main(["crash", str(kdump61), "-i", str(script)]) == 0
    assert capsys.readouterr().out == (
        "ffffffff84bccf31 (T) panic\nffffffff84bcd06e (T) panic+317\n"
    )
