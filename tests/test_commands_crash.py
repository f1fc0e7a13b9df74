"""The crash-compatible commands on the real 6.1 dump with no vmlinux (types from the
dump's BTF), compared with the outputs of the real crash 9.0.2 (with DWARF)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("drgn")

from kdumpkit.analyze.session import Session


@pytest.fixture(scope="module")
def session(kdump61: Path) -> Session:
    from kdumpkit.analyze.program import open_program

    return Session(open_program(kdump61))


def crash_text(fx61: Path, name: str) -> str:
    return (fx61 / "crash-9.0.2" / f"{name}.txt").read_text()


@pytest.mark.parametrize(
    ("command", "reference"),
    [
        ("ps", "ps"),
        ("log", "log"),
        ("mod", "mod"),
        ("kmem -i", "kmem-i"),
        ("runq", "runq"),
    ],
)
def test_byte_identical_to_crash(
    session: Session, fx61: Path, command: str, reference: str
) -> None:
    assert session.run_to_text(command) == crash_text(fx61, reference)


def test_log_equals_makedumpfile(session: Session, fx61: Path) -> None:
    ours = session.run_to_text("log")
    assert ours == (fx61 / "makedumpfile" / "dump-dmesg.txt").read_text()
    # with callers: makedumpfile 1.7.8's text, the caller in crash's field
    ours = session.run_to_text("log -c")
    assert ours == crash_caller_field((fx61 / "makedumpfile" / "dump-dmesg-1.7.8.txt").read_text())


def crash_caller_field(makedumpfile_text: str) -> str:
    """makedumpfile 1.7.8 pads the caller to ``[%8s]``; crash 9.0.2's ``log -c`` prints
    the kernel's own ``[%6s]`` (byte-identical with crash's real output on every testbed
    dump, tests/test_commands_more_dumps.py), continuation lines indented to match."""
    text = re.sub(
        r"^(\[[ 0-9.]+\] )\[ *([TC]\d+)\]",
        lambda m: f"{m[1]}[{m[2]:>6}]",
        makedumpfile_text,
        flags=re.MULTILINE,
    )
    return re.sub(r"^ {26}", " " * 24, text, flags=re.MULTILINE)


def test_sys_fields(session: Session, fx61: Path) -> None:
    ours = session.run_to_text("sys").splitlines()
    theirs = crash_text(fx61, "sys").splitlines()
    assert [line.split(":", 1)[0] for line in ours] == [line.split(":", 1)[0] for line in theirs]
    # KERNEL names the vmlinux crash was given; we have none.  DUMPFILE is the path as given.
    assert ours[2:] == theirs[2:]
    assert ours[1].endswith("vmcore.kdump  [PARTIAL DUMP]")


def test_ps_rows_and_filters(session: Session) -> None:
    result = session.execute(["ps"])
    assert len(result.rows) == 60
    crasher = [r for r in result.rows if r["comm"] == "testbed_crasher"]
    assert crasher and crasher[0]["pid"] == 134 and crasher[0]["active"]
    user = session.run_to_text("ps -u").splitlines()
    assert [line.split()[-1] for line in user[1:]] == [
        "init",
        "testbed_sleeper",
        "testbed_spinner",
        "testbed_fifo",
        "testbed_crasher",
    ]
    assert session.run_to_text("ps 126").splitlines()[1].startswith(">     126")
    assert len(session.run_to_text("ps -A").splitlines()) == 3


def test_log_options(session: Session) -> None:
    plain = session.run_to_text("log -t").splitlines()
    assert plain[0].startswith("Linux version 6.1.0-56-cloud-amd64")
    levels = session.run_to_text("log -m").splitlines()
    assert levels[0].startswith("[    0.000000] <5>Linux version")


def test_runq_rows(session: Session) -> None:
    rows = session.execute(["runq", "-c", "1"]).rows
    assert [(r["cpu"], r["current"]["pid"], r["cfs"], r["rt"]) for r in rows] == [(1, 126, [], [])]


def test_set_changes_the_context(session: Session) -> None:
    try:
        block = session.run_to_text("set 126")
        assert block.splitlines() == [
            "    PID: 126",
            'COMMAND: "testbed_spinner"',
            "   TASK: ffff8f0bc2033000  [THREAD_INFO: ffff8f0bc2033000]",
            "    CPU: 1",
            "  STATE: TASK_RUNNING (ACTIVE)",
        ]
        assert 'COMMAND: "testbed_spinner"' in session.run_to_text("task -R pid")
        assert "/dev/null" in session.run_to_text("files")
    finally:
        panic = session.run_to_text("set -p")
    # the panic task's block is what crash prints at start-up (startup.txt)
    assert panic.splitlines()[-1] == "  STATE: TASK_RUNNING (PANIC)"
    assert session.run_to_text("set 99999") == "set: invalid task or pid value: 99999\n"


def test_struct_offsets(session: Session) -> None:
    assert session.run_to_text("struct -o list_head") == (
        "struct list_head {\n"
        "  [0] struct list_head *next;\n"
        "  [8] struct list_head *prev;\n"
        "}\n"
        "SIZE: 16\n"
    )
    assert session.run_to_text("struct task_struct.pid ffff8f0bc207b000") == ("  pid = 134,\n")
    assert session.run_to_text("struct -o no_such_struct") == (
        "struct: invalid data structure reference: no_such_struct\n"
    )


def test_help_lists_every_command(session: Session) -> None:
    listing = session.run_to_text("help")
    words = set(listing.split())
    assert {
        "bt",
        "ps",
        "log",
        "sys",
        "mod",
        "kmem",
        "runq",
        "struct",
        "rd",
        "sym",
        "dis",
        "set",
        "help",
    } <= words
    assert session.run_to_text("help rd").startswith("NAME\n  rd - read memory")


def test_drgn_commands_pass_through(session: Session, kdump61: Path) -> None:
    from kdumpkit.dump.open import open_dump

    # init_task is kernel text/data: physical = virtual - __START_KERNEL_map + phys_base
    with open_dump(kdump61) as dump:
        phys_base = dump.vmcoreinfo.phys_base or 0
    init_task = 0xFFFFFFFF85C1AA40
    physical = init_task - 0xFFFFFFFF80000000 + phys_base
    assert session.run_to_text(f"vtop {init_task:x}").splitlines()[1].split() == [
        f"{init_task:x}",
        f"{physical:x}",
    ]
    assert "rootfs" in session.run_to_text("mount").splitlines()[1]
    assert "kmalloc-64" in session.run_to_text("kmem -s")
    assert session.run_to_text("list").startswith("list: ")


def test_options_we_lack_go_to_drgn(session: Session) -> None:
    # ps -r is drgn's
    assert session.run_to_text("ps -r 134").splitlines()[1].split() == [
        "RLIMIT",
        "CURRENT",
        "MAXIMUM",
    ]
    # ps -p is ours now: crash's hierarchy, a blank line after it
    lines = session.run_to_text("ps -p 134").splitlines()
    assert [line.split()[1] for line in lines[:-1]] == ["0", "1", "134"] and lines[-1] == ""
    assert session.run_to_text("ps -z").startswith("ps: unrecognized arguments: -z")


def test_sym_knows_modules_and_nm_letters(session: Session, fx61: Path) -> None:
    # a brd function: crash marks module symbols with [module]
    assert session.run_to_text("sym ffffffffc0351010") == (
        "ffffffffc0351010 (t) brd_insert_page.part.0+16 [brd]\n"
    )
    listing = session.run_to_text("sym -m brd").splitlines()
    assert "ffffffffc0351390 (t) brd_probe [brd]" in listing
    assert all(line.endswith("[brd]") for line in listing)
    # kallsyms' own letters, not guesses from the binding
    assert session.run_to_text("sym init_task") == "ffffffff85c1aa40 (D) init_task\n"


def test_help_for_commands_drgn_runs(session: Session) -> None:
    text = session.run_to_text("help dev")
    assert text.startswith("NAME\n  dev - device data\n\nSYNOPSIS\n  dev ")
    assert "-o NAME: member offsets" in session.run_to_text("help struct")


def test_bad_task_and_cpu_arguments(session: Session) -> None:
    for bad in ("ffff", "ffff8f0bc2033008", "zz", "99999"):
        assert session.run_to_text(f"set {bad}") == f"set: invalid task or pid value: {bad}\n"
    assert session.run_to_text("runq -c 99") == "runq: invalid cpu specification: 99\n"
    assert session.run_to_text("set ffffffff85c1aa40").splitlines()[0] == "    PID: 0"
    session.run_to_text("set -p")


def test_each_namesake_module_defines_its_command() -> None:
    """find_command imports only ``<name>.py`` for command ``name``: that module's class
    must be the one the full registry holds, whatever the import order."""
    from kdumpkit.analyze.commands import command_module_names, load_all_commands

    registry = load_all_commands()
    namesakes = [name for name in command_module_names() if name in registry]
    assert {"bt", "ps", "log", "sys"} <= set(namesakes)
    for name in namesakes:
        assert registry[name].__module__ == f"kdumpkit.analyze.commands.{name}", name


def test_bt_imports_only_its_own_command_module(kdump61: Path) -> None:
    """A fresh ``crash -c bt`` imports bt.py, not the other commands nor drgn's helpers;
    ``help`` run first still lists every command."""
    import ast
    import subprocess
    import sys

    probe = (
        "import sys; from kdumpkit.cli.main import main; main(sys.argv[1:]); "
        "print(sorted(m.rsplit('.', 1)[1] for m in sys.modules "
        "if m.startswith('kdumpkit.analyze.commands.') or m == 'drgn.helpers.linux'),"
        " file=sys.stderr)"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe, "crash", str(kdump61), "-c", "bt"],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = ast.literal_eval(run.stderr.strip().splitlines()[-1])
    # nor all of drgn's Linux helpers (drgn.helpers.linux imports every one of them)
    assert "bt" in loaded and not {"ps", "log", "kmem", "help", "linux"} & set(loaded), loaded
    run = subprocess.run(
        [sys.executable, "-m", "kdumpkit", "crash", str(kdump61), "-c", "help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for name in ("bt", "ps", "log", "kmem", "mount", "struct", "vtop"):
        assert f" {name} " in f" {' '.join(run.stdout.split())} ", name


def test_a_command_module_that_fails_to_import_fails_loudly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A typo in a command module is an error naming the module, not a vanished command."""
    import importlib

    from kdumpkit.analyze import commands

    real = importlib.import_module

    def broken(name: str, *args: object) -> object:
        if name == "kdumpkit.analyze.commands.mod":
            raise ImportError("cannot import name 'module_tabel'")
        return real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(commands.importlib, "import_module", broken)
    with pytest.raises(commands.CommandImportError, match=r"commands\.mod failed.*module_tabel"):
        commands._import_command_module("mod")
