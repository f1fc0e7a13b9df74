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
from kdumpkit.analyze.crashformat import elapsed_text, runq_task_line
from kdumpkit.analyze.facts.cpus import for_each_cpu_in_dump
from kdumpkit.analyze.facts.tasks import MAX_TASKS, task_comm

if TYPE_CHECKING:
    from drgn import Object, Program


def _task_ref(task: Object, prio: int | None = None) -> dict[str, Any]:
    return {
        "pid": task.pid.value_(),
        "task": task.value_(),
        "comm": task_comm(task),
        "prio": task.prio.value_() if prio is None else prio,
    }


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
        for entity in list_for_each_entry(
            "struct sched_rt_entity", queue.address_of_(), "run_list"
        ):
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
        "cfs": [
            _task_ref(task) for task in cfs_rq_for_each_queued_task(rq.cfs.address_of_(), set())
        ],
    }


def _queued(tasks: list[dict[str, Any]]) -> str:
    if not tasks:
        return "     [no tasks queued]\n"
    return "".join(
        f'     [{t["prio"]:3d}] PID: {t["pid"]:<6} TASK: {t["task"]:x}  COMMAND: "{t["comm"]}"\n'
        for t in tasks
    )


def render_run_queue(row: dict[str, Any]) -> str:
    """One CPU's block."""
    cur = row["current"]
    return (
        f"CPU {row['cpu']} RUNQUEUE: {row['rq']:x}\n"
        f'  CURRENT: PID: {cur["pid"]:<6} TASK: {cur["task"]:x}  COMMAND: "{cur["comm"]}"\n'
        f"  RT PRIO_ARRAY: {row['rt_array']:x}\n"
        + _queued(row["rt"])
        + f"  CFS RB_ROOT: {row['cfs_root']:x}\n"
        + _queued(row["cfs"])
    )


def _cpu_label(cpu: int) -> str:
    """`` CPU 3`` / ``CPU 12``: crash pads single-digit CPUs by one space."""
    return f"{' ' if cpu < 10 else ''}CPU {cpu}"


def _task_line(task: Object) -> str:
    return runq_task_line(task.pid.value_(), task.value_(), task_comm(task))


def render_timestamps(prog: Program, cpus: list[int], elapsed: bool) -> str:
    """``runq -t``: each run queue's clock and its current task's last_arrival;
    ``runq -m``: the time between the two."""
    from drgn.helpers.linux.sched import cpu_rq

    lines = []
    for cpu in cpus:
        rq = cpu_rq(prog, cpu)
        curr = rq.curr.read_()
        clock, arrival = rq.clock.value_(), curr.sched_info.last_arrival.value_()
        if elapsed:
            lines.append(
                f"{_cpu_label(cpu)}: [{elapsed_text(max(clock - arrival, 0))}]  "
                f"{_task_line(curr)}\n"
            )
        else:
            lines.append(f"{_cpu_label(cpu)}: {clock}\n        {arrival}  {_task_line(curr)}\n")
    return "".join(lines)


def _task_group_line(cfs_rq: Object, depth: int) -> str:
    from drgn.helpers.linux.cgroup import cgroup_name

    tg = cfs_rq.tg.read_()
    try:
        name = cgroup_name(tg.css.cgroup).decode("utf-8", "replace")
    except (AttributeError, LookupError, drgn.FaultError):
        name = ""
    throttled = " (THROTTLED)" if getattr(cfs_rq, "throttled", 0) else ""
    return (
        " " * (2 + 3 * depth)
        + f"TASK_GROUP: {tg.value_():x}  CFS_RQ: {cfs_rq.value_():x}"
        + (f"  <{name}>" if name else "")
        + throttled
        + "\n"
    )


def render_task_groups(prog: Program, cpus: list[int]) -> str:
    """``runq -g``: each CPU's CFS entities under the root task group, groups nested, the
    running entity marked [CURRENT]."""
    from drgn.helpers.linux.sched import cfs_rq_for_each_entity, cpu_rq, sched_entity_to_task

    root = prog["root_task_group"].address_
    blocks = []
    for cpu in cpus:
        rq = cpu_rq(prog, cpu)
        cfs_rq = rq.cfs.address_of_()
        lines = [
            f"CPU {cpu}\n",
            f"  CURRENT: {_task_line(rq.curr.read_())}\n",
            f"  ROOT_TASK_GROUP: {root:x}  CFS_RQ: {cfs_rq.value_():x}\n",
        ]
        for entity, depth, is_curr, is_task in cfs_rq_for_each_entity(cfs_rq):
            if is_task:
                task = sched_entity_to_task(entity)
                lines.append(
                    " " * (5 + 3 * depth)
                    + f"[{task.prio.value_():3d}] "
                    + _task_line(task)
                    + (" [CURRENT]" if is_curr else "")
                    + "\n"
                )
            else:
                lines.append(_task_group_line(entity.my_q.read_(), depth + 1))
        if len(lines) == 3:
            lines.append("     [no tasks queued]\n")
        blocks.append("".join(lines))
    return "\n".join(blocks)


@register
class Runq(Command):
    """crash's ``runq`` (and ``-c CPUS``, ``-t``, ``-m``, ``-g``)."""

    name = "runq"
    help = "run queue"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-c", dest="cpus", metavar="cpu", help="only these CPUs (e.g. 0,2)")
        parser.add_argument(
            "-t",
            dest="timestamps",
            action="store_true",
            help="run-queue clock and the current task's last_arrival",
        )
        parser.add_argument(
            "-m",
            dest="elapsed",
            action="store_true",
            help="how long each CPU's current task has been running",
        )
        parser.add_argument(
            "-g", dest="groups", action="store_true", help="CFS entities by task group"
        )

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
        if args.timestamps or args.elapsed:
            text = render_timestamps(prog, cpus, elapsed=args.elapsed)
            return Result(text, [{"text": text}])
        if args.groups:
            text = render_task_groups(prog, cpus)
            return Result(text, [{"text": text}])
        rows = [run_queue(prog, cpu) for cpu in cpus]
        return Result("\n".join(render_run_queue(r) for r in rows), rows)
