"""``files``: a task's root, working directory and open files, as crash lists them."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from kdumpkit.analyze.commands.base import Command, CommandError, Result, register
from kdumpkit.analyze.commands.common import find_task_arg
from kdumpkit.analyze.crashformat import bt_task_header, files_text
from kdumpkit.analyze.facts.fs import task_files
from kdumpkit.analyze.facts.tasks import context_task, task_comm, tasks_with_pid

if TYPE_CHECKING:
    from drgn import Object, Program


@register
class Files(Command):
    """crash's ``files [PID | task]...``."""

    name = "files"
    help = "open files of a task"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("targets", nargs="*", metavar="pid | taskp")

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        if not args.targets:
            current = context_task(prog)
            if current is None:
                raise CommandError("no current context")
            text, row = files_block(current)
            return Result(text, [row])
        blocks, rows = [], []
        for index, target in enumerate(args.targets):
            # crash: the headers of every argument but the first start with a blank
            # line, and a PID's blocks end with one.
            if target.isdigit():
                tasks = tasks_with_pid(prog, int(target))
                if not tasks:
                    blocks.append(f"files: invalid task or pid value: {target}\n")
            else:
                tasks = [find_task_arg(prog, target)]
            for task in tasks:
                text, row = files_block(task)
                blocks.append(("\n" if index else "") + text + ("\n" if target.isdigit() else ""))
                rows.append(row)
        return Result("".join(blocks), rows)


def files_block(task: Object) -> tuple[str, dict[str, Any]]:
    """One task's ``files`` text and record."""
    from drgn.helpers.linux.sched import task_cpu

    pid, address = task.pid.value_(), task.value_()
    files = task_files(task)
    header = bt_task_header(pid, address, task_cpu(task), task_comm(task))
    return files_text(header, files), {"pid": pid, "task": address, **files.to_json()}
