"""Debian's newest kernel, 7.3 (trixie-backports' 7.3.4+deb13-cloud-amd64 when written), end
to end: a real kdump made by the testbed (``python3 testbed/build.py --kernels 7.3``) into
``.cache/oracle``, compared with crash 9.0.2 run with ``--no_modules`` (without it crash 9.0.2
stops on 7.3) and the DWARF vmlinux.  Without the dump these tests skip (fail under
``make e2e``); the HZ rule is also checked on 6.1."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
from oracles import ORACLE, built_folder, built_release, built_vmlinux

from kdumpkit.analyze.commands.sys import hz_from_boottime, jiffies_hz
from kdumpkit.analyze.program import open_program
from kdumpkit.analyze.session import Session
from kdumpkit.cli.main import main

SERIES = "7.3"
CRASH = "crash-9.0.2-no_modules/vmcore.elf"
#: crash 9.0.2 prints these the same as we do on 7.3 (its bt, mod, sys and kmem -i
#: are wrong there: stale frames, no module memory, HZ=1000 uptime, no swap lines).
BYTE_IDENTICAL = {"ps": "ps.txt", "log": "log.txt", "runq": "runq.txt"}


def dump_73() -> Path:
    """The 7.3 kdump's raw /proc/vmcore (crash's outputs beside it), or skip."""
    return built_folder(SERIES, "kdump-load", "vmcore.elf", f"{CRASH}/ps.txt") / "vmcore.elf"


def crash_73() -> Path:
    """crash 9.0.2 --no_modules's outputs on :func:`dump_73`."""
    return dump_73().parent / CRASH


def test_hz_from_boottime_agrees_with_tick_nsec(kdump61: Path) -> None:
    prog = open_program(kdump61)
    assert hz_from_boottime(prog) == jiffies_hz(prog) == 250


def test_hz_without_tick_nsec_on_73() -> None:
    """7.3.4 has no tick_nsec: HZ comes from jiffies against the timekeeper, and is the
    kernel's CONFIG_HZ; ps -t then works."""
    prog = open_program(dump_73())
    with pytest.raises(LookupError):
        prog.symbol("tick_nsec")
    release = built_release(SERIES)
    config = ORACLE / "kernels" / release / "boot" / f"config-{release}"
    config_hz = re.search(r"^CONFIG_HZ=(\d+)$", config.read_text(), re.M)
    assert config_hz and jiffies_hz(prog) == int(config_hz.group(1))
    text = Session(prog).run_to_text("ps -t")
    # a block per task crash's ps lists (its first line is the header)
    tasks = len((crash_73() / "ps.txt").read_text().splitlines()) - 1
    assert text.count("RUN TIME:") == tasks > 50


@pytest.mark.parametrize("command", sorted(BYTE_IDENTICAL))
def test_73_commands_equal_crash(command: str) -> None:
    session = Session(open_program(dump_73()))
    assert session.run_to_text(command) == (crash_73() / BYTE_IDENTICAL[command]).read_text()


def test_73_saved_dump_keeps_what_analysis_needs(tmp_path: Path) -> None:
    """``save -d 31`` of the 7.3 kdump (where makedumpfile 1.7.8's -d 31 loses task
    structs): every task, trace, module and log line is still there."""
    vmcore = dump_73()
    saved = tmp_path / "vmcore.d31"
    assert main(["save", "-q", "-d", "31", "--compress", "zlib", str(vmcore), str(saved)]) == 0
    assert saved.stat().st_size < vmcore.stat().st_size // 10
    raw, ours = Session(open_program(vmcore)), Session(open_program(saved))
    for command in ("ps", "foreach bt", "mod", "log", "kmem -i"):
        assert ours.run_to_text(command) == raw.run_to_text(command), command
    assert ours.run_to_text("ps") == (crash_73() / "ps.txt").read_text()


def test_73_irq_equals_drgn_with_dwarf() -> None:
    """7.2 renamed nr_irqs to total_nr_irqs: typed from our globals table, drgn 0.3.0's
    ``irq`` prints what it prints with the -dbg vmlinux."""
    import drgn
    import drgn.commands
    import drgn.commands._crash  # registers drgn's crash command

    vmcore, vmlinux = dump_73(), built_vmlinux(SERIES)
    reference = drgn.Program()
    reference.set_core_dump(str(vmcore))
    reference.load_debug_info([str(vmlinux)])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        drgn.commands.run_command(reference, "crash irq", globals={})
    ours = Session(open_program(vmcore)).run_to_text("irq")
    assert ours == out.getvalue() and ours.count("\n") > 400
