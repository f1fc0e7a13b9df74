"""``task`` (a task_struct's contents) and ``set`` (the task later commands act on)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import drgn

from kdumpkit.analyze.commands.base import Command, CommandError, Result, register
from kdumpkit.analyze.commands.common import (
    active_tasks,
    context_task,
    find_task_arg,
    panic_task,
    set_context_task,
)
from kdumpkit.analyze.commands.drgn_crash import DrgnCrashCommand

if TYPE_CHECKING:
    from drgn import Object, Program

#: kernel state bits named as crash's ``set`` and start-up banner name them
_STATE_NAMES = (
    "TASK_RUNNING",
    "TASK_INTERRUPTIBLE",
    "TASK_UNINTERRUPTIBLE",
    "TASK_STOPPED",
    "TASK_TRACED",
    "EXIT_DEAD",
    "EXIT_ZOMBIE",
    "TASK_PARKED",
)


def state_name(task: Object) -> str:
    """``TASK_RUNNING``, ``TASK_INTERRUPTIBLE``..., plus ``(PANIC)``, ``(SYSRQ)`` or
    ``(ACTIVE)``."""
    from kdumpkit.analyze.commands.ps import TASK_IDLE, TASK_REPORT, task_state_raw

    state = task_state_raw(task)
    if state == TASK_IDLE:
        name = "TASK_IDLE"
    else:
        bits = (state | task.exit_state.value_()) & TASK_REPORT
        name = _STATE_NAMES[bits.bit_length()] if bits else "TASK_RUNNING"
    panicked = panic_task(task.prog_)
    if panicked is not None and panicked.value_() == task.value_():
        return f"{name} ({panic_kind(task)})"
    if task.value_() in active_tasks(task.prog_):
        return f"{name} (ACTIVE)"
    return f"{name} "  # crash leaves the space before the (absent) annotation


def written_by_kdump(prog: Program) -> bool:
    """Whether the dump was captured through kdump: ``__crash_kexec`` stamps CRASHTIME
    into VMCOREINFO; a hypervisor's dump of a panicked guest has none."""
    dump = prog.cache.get("kdumpkit.dump")
    vmcoreinfo = getattr(dump, "vmcoreinfo", None)
    return vmcoreinfo is None or vmcoreinfo.crashtime is not None


def panic_kind(task: Object) -> str:
    """``PANIC``, or ``SYSRQ`` as crash says when it had to find the panic task itself
    (no kdump) and its stack runs through sysrq's crash handler."""
    prog = task.prog_
    if written_by_kdump(prog):
        return "PANIC"
    from kdumpkit.analyze.stack import stack_trace

    try:
        frames = stack_trace(prog, task)
    except (drgn.FaultError, LookupError, ValueError):
        return "PANIC"
    if any(frame.function == "sysrq_handle_crash" for frame in frames):
        return "SYSRQ"
    return "PANIC"


def context_block(task: Object) -> str:
    """crash's context display, labels right-aligned to ``COMMAND``."""
    from kdumpkit.analyze.commands.sys import context_pairs

    pairs = context_pairs(task, state_name(task))
    return "".join(f"{label:>7}: {value}\n" for label, value in pairs)


@register
class Set(Command):
    """crash's ``set``: show or change the task context."""

    name = "set"
    help = "set the task context (PID, task address, -p panic task, -c CPU)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-p", dest="panic", action="store_true", help="the panic task")
        parser.add_argument("-c", dest="cpu", type=int, help="the task active on this CPU")
        parser.add_argument("target", nargs="?", metavar="pid | task")

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        if args.panic:
            task = panic_task(prog)
            if task is None:
                raise CommandError("no panic task found")
        elif args.cpu is not None:
            from drgn.helpers.linux.sched import cpu_curr

            if args.cpu not in active_tasks(prog).values():
                raise CommandError(f"invalid cpu: {args.cpu}")
            task = cpu_curr(prog, args.cpu)
        elif args.target:
            task = find_task_arg(prog, args.target)
        else:
            task = context_task(prog)
            if task is None:
                raise CommandError("no current context")
            return Result(context_block(task), [{"task": task.value_()}])
        set_context_task(prog, task)
        return Result(context_block(task), [{"task": task.value_(), "pid": task.pid.value_()}])


@register
class Task(DrgnCrashCommand):
    """crash's ``task``."""

    name = "task"
    help = "task_struct contents (-R member,... for chosen members)"
