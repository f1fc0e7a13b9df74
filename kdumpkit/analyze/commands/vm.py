"""``vm``: a task's address space, as crash lists it."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from kdumpkit.analyze.commands.base import Command, CommandError, Result, register
from kdumpkit.analyze.commands.common import find_task_arg
from kdumpkit.analyze.crashformat import bt_task_header, vm_text
from kdumpkit.analyze.facts.mm import task_memory, task_vmas
from kdumpkit.analyze.facts.tasks import context_task, task_comm, tasks_with_pid

if TYPE_CHECKING:
    from drgn import Object, Program


@register
class Vm(Command):
    """crash's ``vm [PID | task]...`` (no options)."""

    name = "vm"
    help = "virtual memory of a task"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("targets", nargs="*", metavar="pid | taskp")

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        if not args.targets:
            current = context_task(prog)
            if current is None:
                raise CommandError("no current context")
            text, row = vm_block(current)
            return Result(text, [row])
        blocks: list[str] = []
        rows: list[dict[str, Any]] = []
        for target in args.targets:
            if target.isdigit():
                tasks = tasks_with_pid(prog, int(target))
                if not tasks:
                    blocks.append(f"vm: invalid task or pid value: {target}\n")
            else:
                tasks = [find_task_arg(prog, target)]
            for task in tasks:
                text, row = vm_block(task)
                # crash: every header but the first follows a blank line
                blocks.append(("\n" if rows else "") + text)
                rows.append(row)
        return Result("".join(blocks), rows)


def vm_block(task: Object) -> tuple[str, dict[str, Any]]:
    """One task's ``vm`` text and record."""
    from drgn.helpers.linux.sched import task_cpu

    pid, address = task.pid.value_(), task.value_()
    memory = task_memory(task)
    vmas = task_vmas(task)
    header = bt_task_header(pid, address, task_cpu(task), task_comm(task))
    text = vm_text(header, memory, vmas, task.prog_["PAGE_SIZE"].value_())
    return text, {
        "pid": pid,
        "task": address,
        **memory.to_json(),
        "vmas": [v.to_json() for v in vmas],
    }
