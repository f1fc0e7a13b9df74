"""``p`` and ``struct ADDRESS`` print values as crash 9.0.2 does (gdb's notation), from
BTF alone, on the 6.1 fixture."""

from __future__ import annotations

import subprocess
from pathlib import Path

import drgn
import pytest
from oracles import crash_9

from kdumpkit.analyze.commands.gdbvalue import format_value, quote_bytes
from kdumpkit.analyze.program import open_program
from kdumpkit.analyze.session import Session

#: Commands whose output is crash's byte for byte. Left out, and why: ``p init_task.stack``
#: (crash does not name ``<init_stack>``, an address five linker symbols share) and
#: ``p node_data``/``p sys_call_table`` (declared ``[]`` in the headers, so crash prints
#: their address; we know their length and print them).
COMMANDS = [
    "p init_uts_ns", "p init_task.thread", "p init_task.se.load",
    "p tk_core.timekeeper.tkr_mono", "p node_states", "p init_task.sched_class",
    "p init_task.__state", "p init_task.in_execve", "p system_state", "p init_task.comm[0]",
    "p &init_task", "p *init_task.sched_class", "p init_task.on_cpu", "p init_task.prio",
    "p -x init_task.prio", "p jiffies_64", "p init_task.comm", "p saved_command_line",
    "struct task_struct.pid ffff8f0bc207b000", "struct task_struct.pid,comm,stack ffff8f0bc207b000",
    "struct task_struct.se.load ffff8f0bc207b000", "struct list_head ffffffff85c1aa40",
    "struct uts_namespace.ns ffffffff85c52e00", "p avenrun",
    "p runqueues", "p cpu_number", "p current_task",  # per-cpu: type and addresses
]  # fmt: skip


@pytest.mark.slow
def test_values_are_crash_9s(kdump61: Path) -> None:
    crash, vmlinux = crash_9()
    script = "".join(f"{command}\n!echo ==END==\n" for command in COMMANDS) + "quit\n"
    run = subprocess.run(
        [*crash, "-s", str(vmlinux), str(kdump61)], input=script,
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    theirs = run.stdout.split("==END==\n")[: len(COMMANDS)]
    session = Session(open_program(kdump61))  # BTF only: no vmlinux
    for command, expected in zip(COMMANDS, theirs, strict=True):
        assert session.run_to_text(command) == expected, command


def test_value_history_numbers_and_strings(kdump61: Path) -> None:
    session = Session(open_program(kdump61))
    assert session.run_to_text("p jiffies_64") == "jiffies_64 = $1 = 4294893566\n"
    assert session.run_to_text("p init_task.comm") == (
        '$2 = "swapper/0\\000\\000\\000\\000\\000\\000"\n'
    )
    assert session.run_to_text("p -x init_task.prio") == "$3 = 0x78\n"
    assert session.run_to_text("p &init_task") == (
        "$4 = (struct task_struct *) 0xffffffff85c1aa40 <init_task>\n"
    )
    # What the pattern does not cover still goes to drgn (per-cpu values here).
    assert "runqueues" in session.run_to_text("p runqueues:0")


def test_quoting_and_limits(kdump61: Path) -> None:
    assert quote_bytes(b'a"\\\n\x00\x7f\xff') == '"a\\"\\\\\\n\\000\\177\\377"'
    prog = open_program(kdump61)
    flexible = prog["init_task"].thread.fpu.__fpstate.regs.xsave.extended_state_area
    assert format_value(flexible) == f'0x{flexible.address_:x} <init_task+6208> ""'
    # A value read out of memory prints as the object in memory does.
    in_memory = prog["init_uts_ns"].name
    assert format_value(in_memory.read_()) == format_value(in_memory)
    ints = prog.array_type(prog.type("int"), 300)
    array = drgn.Object(prog, ints, address=prog["init_task"].address_)
    assert format_value(array).endswith("...}") and format_value(array).count(",") == 255
