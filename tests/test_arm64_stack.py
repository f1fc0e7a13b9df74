"""arm64 stacks with no vmlinux: every task's trace (frame records, PAC bits stripped,
exception frames in pt_regs, the CPUs' NT_PRSTATUS) equals drgn 0.3.0's with the DWARF
vmlinux, on Debian's 6.12 arm64 kernel at 48-bit VAs, at 52-bit VAs (LPA2) with pointer
authentication, in a QEMU dump, and on 6.1 (whose kallsyms lists no variables: there the
vmlinux is given to kdumpkit too)."""

from __future__ import annotations

from pathlib import Path

import drgn
import pytest
from arm64_fixtures import KVER_6_1, KVER_6_12, arm64_file, arm64_vmlinux
from drgn.helpers.linux.pid import for_each_task

from kdumpkit.analyze.program import open_program
from kdumpkit.analyze.stack import panic_cpu, saved_registers, stack_trace

CASES = [
    (f"kdump-{KVER_6_12}-load", "vmcore.elf", KVER_6_12, False),
    (f"kdump-{KVER_6_12}-load-cpumax", "vmcore.elf", KVER_6_12, False),
    (f"qemu-{KVER_6_12}-fwcfg", "vmcore.qemu.elf", KVER_6_12, False),
    (f"kdump-{KVER_6_12}-load", "vmcore.elf", KVER_6_12, True),
    (f"kdump-{KVER_6_1}-load", "vmcore.kdump", KVER_6_1, True),
    (f"qemu-{KVER_6_1}-fwcfg", "vmcore.qemu.elf", KVER_6_1, True),
]


def _drgn_pcs(prog: drgn.Program, task: drgn.Object) -> list[int]:
    pcs: list[int] = []
    for frame in prog.stack_trace(task):
        if not pcs or pcs[-1] != frame.pc:  # inlined functions' frames share a pc
            pcs.append(frame.pc)
    return pcs


@pytest.mark.parametrize(
    ("folder", "name", "kver", "with_vmlinux"),
    CASES,
    ids=[f"{c[0]}/{c[1]}{'+vmlinux' if c[3] else ''}" for c in CASES],
)
def test_every_stack_is_drgns(folder: str, name: str, kver: str, with_vmlinux: bool) -> None:
    path: Path = arm64_file(folder, name)
    vmlinux = arm64_vmlinux(kver)
    if vmlinux is None:
        pytest.skip(f"the {kver} -dbg vmlinux is not cached")
    reference = drgn.Program()
    reference.set_core_dump(str(path))
    reference.load_debug_info([str(vmlinux)], default=False, main=True)
    ours = open_program(path, vmlinux if with_vmlinux else None)
    compared = 0
    for task in for_each_task(reference):
        theirs = _drgn_pcs(reference, task)
        frames = stack_trace(ours, drgn.Object(ours, "struct task_struct *", task.value_()))
        # Frames crash finds below the saved registers (machine_kexec, the stopping IPI's
        # handler) are not drgn's, which starts from those registers.
        assert [f.pc for f in frames if not f.stale] == theirs, task.comm.string_()
        compared += 1
    assert compared > 50


def test_the_panic_trace_and_the_sleepers() -> None:
    path = arm64_file(f"kdump-{KVER_6_12}-load-cpumax", "vmcore.elf")
    prog = open_program(path)
    cpu = panic_cpu(prog)
    assert cpu in saved_registers(prog)
    names = [f.function for f in stack_trace(prog, cpu)]
    assert names[:4] == ["machine_kexec", "__crash_kexec", "panic", "sysrq_handle_crash"]
    # The write(2) that triggered it came from user space: an EL0 exception frame ends it.
    assert names[-1] == "el0t_64_sync"
    last = stack_trace(prog, cpu)[-1]
    assert last.is_exception_frame and last.user_mode and last.registers is not None
    assert last.registers["pc"] < 1 << 48
    by_comm = {}
    for task in for_each_task(prog):
        by_comm[task.comm.string_().decode()] = task
    sleeper = [f.function for f in stack_trace(prog, by_comm["testbed_sleeper"])]
    assert sleeper[:3] == ["__switch_to", "__schedule", "schedule"]
    assert "do_nanosleep" in sleeper and sleeper[-1] == "el0t_64_sync"


@pytest.mark.parametrize("command", ["bt", "bt -a", "foreach bt"])
def test_bt_is_crash_text(command: str) -> None:
    """crash 9.0.2 (arm64, under qemu-user) with the DWARF vmlinux on 6.1: the same text,
    machine_kexec's frame and the stopped CPU's IPI handler on its IRQ stack included."""
    folder = arm64_file(f"kdump-{KVER_6_1}-load", "vmcore.kdump").parent
    name = command.replace(" -", "-").replace(" ", "-")
    reference = folder / "crash-9.0.2" / "vmcore.kdump" / f"{name}.txt"
    vmlinux = arm64_vmlinux(KVER_6_1)
    if not reference.exists() or vmlinux is None:
        pytest.skip("crash 9.0.2's arm64 output or the -dbg vmlinux is not made (50-crash.sh)")
    from kdumpkit.analyze.session import Session

    session = Session(open_program(folder / "vmcore.kdump", vmlinux))
    assert session.run_to_text(command) == reference.read_text()
