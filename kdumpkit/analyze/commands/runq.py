"""``runq``: each CPU's run queue as crash shows it.

crash lists the RT tasks queue by queue (highest priority first, each queue in list
order, the running RT task included: the RT class keeps it queued) and the CFS tasks
in red-black tree order (leftmost first), descending into task groups where their
entity sits: first the group the running entity belongs to, then each group where it
is queued.  The running CFS task itself is not in the tree.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import drgn

from kdumpkit.analyze.commands.base import Command, CommandError, Result, register
from kdumpkit.analyze.commands.common import MAX_TASKS, for_each_cpu_in_dump, task_comm

if TYPE_CHECKING:
    from drgn import Object, Program


def _task_ref(task: Object, prio: int | None = None) -> dict[str, Any]:
    return {"pid": task.pid.value_(), "task": task.value_(), "comm": task_comm(task),
            "prio": task.prio.value_() if prio is None else prio}


def _group_queue(entity: Object) -> Object | None:
    """The run queue a group entity stands for (``se->my_q``), or None for a task.
    Without CONFIG_FAIR_GROUP_SCHED / CONFIG_RT_GROUP_SCHED there is no ``my_q``."""
    try:
        queue = entity.my_q.read_()
    except AttributeError:
        return None
    return queue if queue else None


def _timeline_root(cfs_rq: Object) -> tuple[Object, int]:
    """The CFS tree's ``struct rb_root *`` and its cached leftmost node."""
    timeline = cfs_rq.tasks_timeline
    try:
        return timeline.rb_root.address_of_(), timeline.rb_leftmost.value_()
    except AttributeError:
        # Before Linux kernel commit bfb068892d30 ("sched/fair: replace
        # cfs_rq->rb_leftmost") (v4.14) the root was a plain rb_root and the
        # leftmost node a member of the cfs_rq.
        return timeline.address_of_(), cfs_rq.rb_leftmost.value_()


def cfs_rq_for_each_queued_task(cfs_rq: Object, seen: set[int]) -> Iterator[Object]:
    """The tasks waiting on a CFS run queue in crash's order: the tasks of the running
    group entity's queue first, then the tree in order, each group entity replaced by
    the tasks of its own queue.  A task met twice (a corrupt tree) ends the walk."""
    from drgn.helpers.linux.rbtree import rb_first, rb_next

    curr = cfs_rq.curr.read_()
    if curr:
        group = _group_queue(curr)
        if group is not None:
            yield from cfs_rq_for_each_queued_task(group, seen)
    root, leftmost = _timeline_root(cfs_rq)
    if not leftmost:
        return  # crash trusts the cached leftmost: no leftmost, nothing queued
    node = rb_first(root)
    while node and len(seen) < MAX_TASKS:
        entity = drgn.container_of(node, "struct sched_entity", "run_node")
        group = _group_queue(entity)
        if group is not None:
            yield from cfs_rq_for_each_queued_task(group, seen)
        else:
            task = drgn.container_of(entity, "struct task_struct", "se")
            if task.value_() in seen:
                return
            seen.add(task.value_())
            yield task
        node = rb_next(node)


def rt_rq_for_each_queued_task(rt_rq: Object, seen: set[int]) -> Iterator[tuple[int, Object]]:
    """(queue index, task) for every task on an RT run queue's active priority array,
    queue by queue; a group entity's tasks are listed where the group is queued."""
    from drgn.helpers.linux.list import list_for_each_entry

    for index, queue in enumerate(rt_rq.active.queue):
        for entity in list_for_each_entry("struct sched_rt_entity", queue.address_of_(),
                                          "run_list"):
            group = _group_queue(entity)
            if group is not None:
                yield from rt_rq_for_each_queued_task(group, seen)
                continue
            task = drgn.container_of(entity, "struct task_struct", "rt")
            if task.value_() in seen or len(seen) >= MAX_TASKS:
                return
            seen.add(task.value_())
            yield index, task


def run_queue(prog: Program, cpu: int) -> dict[str, Any]:
    """The CPU's rq: current task, queued RT and CFS tasks."""
    from drgn.helpers.linux.sched import cpu_rq

    rq = cpu_rq(prog, cpu)
    if rq.type_.kind != drgn.TypeKind.POINTER:
        rq = rq.address_of_()
    rt_rq = rq.rt.address_of_()
    return {
        "cpu": cpu,
        "rq": rq.value_(),
        "current": _task_ref(rq.curr.read_()),
        "rt_array": rq.rt.active.address_of_().value_(),
        "rt": [_task_ref(task, index) for index, task in rt_rq_for_each_queued_task(rt_rq, set())],
        "cfs_root": rq.cfs.tasks_timeline.address_of_().value_(),
        "cfs": [_task_ref(task)
                for task in cfs_rq_for_each_queued_task(rq.cfs.address_of_(), set())],
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
