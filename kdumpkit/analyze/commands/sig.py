"""``sig``: a task's signal handlers and pending signals, as crash shows them."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from kdumpkit.analyze.commands.base import Result, register
from kdumpkit.analyze.commands.common import find_task_arg
from kdumpkit.analyze.commands.drgn_crash import DrgnCrashCommand
from kdumpkit.analyze.crashformat import bt_task_header, signals_text
from kdumpkit.analyze.facts.signals import task_signals
from kdumpkit.analyze.facts.tasks import context_task, task_comm, tasks_with_pid

if TYPE_CHECKING:
    from drgn import Object, Program


@register
class Sig(DrgnCrashCommand):
    """crash's ``sig [PID | task]...`` (its options by drgn)."""

    name = "sig"
    help = "task signal handling"

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        words: list[str] = args.argv
        if any(word.startswith("-") for word in words):
            return super().run(prog, args)
        tasks: list[Object] = []
        for word in words:
            tasks += (
                tasks_with_pid(prog, int(word)) if word.isdigit() else [find_task_arg(prog, word)]
            )
        if not words:
            current = context_task(prog)
            tasks = [current] if current is not None else []
        blocks, rows = [], []
        for task in tasks:
            text, row = sig_block(task)
            blocks.append(text)
            rows.append(row)
        return Result("".join(blocks), rows)


def sig_block(task: Object) -> tuple[str, dict[str, Any]]:
    """One task's ``sig`` text and record."""
    from drgn.helpers.linux.sched import task_cpu

    pid, address = task.pid.value_(), task.value_()
    signals = task_signals(task)
    header = bt_task_header(pid, address, task_cpu(task), task_comm(task))
    return signals_text(header, signals), {"pid": pid, "task": address, **signals.to_json()}
