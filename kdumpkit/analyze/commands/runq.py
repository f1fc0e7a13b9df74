"""``runq``: each CPU's run queue as crash shows it."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import drgn

from kdumpkit.analyze.commands.base import Command, CommandError, Result, register
from kdumpkit.analyze.commands.common import for_each_cpu_in_dump, task_comm

if TYPE_CHECKING:
    from drgn import Object, Program


def _task_ref(task: Object) -> dict[str, Any]:
    return {"pid": task.pid.value_(), "task": task.value_(), "comm": task_comm(task),
            "prio": task.prio.value_()}


def run_queue(prog: Program, cpu: int) -> dict[str, Any]:
    """The CPU's rq: current task, queued RT and CFS tasks."""
    from drgn.helpers.linux.sched import cpu_rq, rq_for_each_fair_task, rq_for_each_rt_task

    rq = cpu_rq(prog, cpu)
    if rq.type_.kind != drgn.TypeKind.POINTER:
        rq = rq.address_of_()
    curr = rq.curr.value_()
    return {
        "cpu": cpu,
        "rq": rq.value_(),
        "current": _task_ref(rq.curr.read_()),
        "rt_array": rq.rt.active.address_of_().value_(),
        "rt": [_task_ref(t) for t in rq_for_each_rt_task(rq) if t.value_() != curr],
        "cfs_root": rq.cfs.tasks_timeline.address_of_().value_(),
        # The running task is rq->curr, not queued: crash lists only the waiting ones.
        "cfs": [_task_ref(t) for t in rq_for_each_fair_task(rq) if t.value_() != curr],
    }


def _queued(tasks: list[dict[str, Any]]) -> str:
    if not tasks:
        return "     [no tasks queued]\n"
    return "".join(f"     [{t['prio']:3d}] PID: {t['pid']:<6} TASK: {t['task']:x}  "
                   f"COMMAND: \"{t['comm']}\"\n" for t in tasks)


def render_run_queue(row: dict[str, Any]) -> str:
    """One CPU's block."""
    cur = row["current"]
    return (f"CPU {row['cpu']} RUNQUEUE: {row['rq']:x}\n"
            f"  CURRENT: PID: {cur['pid']:<6} TASK: {cur['task']:x}  COMMAND: \"{cur['comm']}\"\n"
            f"  RT PRIO_ARRAY: {row['rt_array']:x}\n" + _queued(row["rt"])
            + f"  CFS RB_ROOT: {row['cfs_root']:x}\n" + _queued(row["cfs"]))


@register
class Runq(Command):
    """crash's ``runq`` (and ``-c CPUS``)."""

    name = "runq"
    help = "run queue"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-c", dest="cpus", metavar="cpu", help="only these CPUs (e.g. 0,2)")

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        cpus = for_each_cpu_in_dump(prog)
        if args.cpus:
            try:
                wanted = {int(c) for c in args.cpus.split(",")}
            except ValueError:
                raise CommandError(f"invalid cpu specification: {args.cpus}") from None
            if not wanted <= set(cpus):
                raise CommandError(f"invalid cpu specification: {args.cpus}")
            cpus = [c for c in cpus if c in wanted]
        rows = [run_queue(prog, cpu) for cpu in cpus]
        return Result("\n".join(render_run_queue(r) for r in rows), rows)
