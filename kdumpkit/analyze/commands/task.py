"""``task`` (a task_struct's contents) and ``set`` (the task later commands act on)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from kdumpkit.analyze.commands.base import Command, CommandError, Result, register
from kdumpkit.analyze.commands.common import find_task_arg
from kdumpkit.analyze.commands.gdbvalue import task_struct_text
from kdumpkit.analyze.context import select_task
from kdumpkit.analyze.crashformat import context_block
from kdumpkit.analyze.facts.cpus import active_tasks
from kdumpkit.analyze.facts.tasks import (
    context_task,
    panic_task,
    task_context,
)

if TYPE_CHECKING:
    from drgn import Program


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
            context = task_context(task)
            return Result(context_block(context), [context.to_json()])
        select_task(prog, task)
        context = task_context(task)
        return Result(context_block(context), [context.to_json()])


@register
class Task(Command):
    """crash's ``task``: the task_struct (and thread_info) of tasks, or chosen members."""

    name = "task"
    help = "task_struct contents (-R member,... for chosen members)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "-R",
            dest="members",
            action="append",
            default=[],
            metavar="member[,member]",
            help="only these task_struct members",
        )
        parser.add_argument("-x", dest="hexadecimal", action="store_true", help="hex values")
        parser.add_argument("-d", dest="decimal", action="store_true", help="decimal values")
        parser.add_argument("targets", nargs="*", metavar="pid | taskp")

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        if args.targets:
            tasks = [find_task_arg(prog, target) for target in args.targets]
        else:
            current = context_task(prog)
            if current is None:
                raise CommandError("no current context")
            tasks = [current]
        members = [m for group in args.members for m in group.split(",") if m]
        blocks, rows = [], []
        for task in tasks:
            text = task_struct_text(task, members, args.hexadecimal)
            blocks.append(text)
            rows.append({"task": task.value_(), "pid": task.pid.value_(), "text": text})
        return Result("".join(blocks), rows)
