"""``ps``: the process table as crash prints it."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import drgn

from kdumpkit.analyze.commands.base import Command, CommandError, Result, register
from kdumpkit.analyze.crashformat import (
    PS_HEADER,
    elapsed_text,
    ps_entry_header,
    ps_row,
    task_header,
    uptime_text,
)
from kdumpkit.analyze.facts.clock import uptime_jiffies
from kdumpkit.analyze.facts.cpus import for_each_cpu_in_dump
from kdumpkit.analyze.facts.tasks import (
    ALL_STATE_CODES,
    ProcessEntry,
    process_table,
    task_ancestry,
    task_children,
    task_comm,
)

if TYPE_CHECKING:
    from drgn import Object, Program

#: scheduling policies by crash's names for ``ps -y`` (include/uapi/linux/sched.h)
SCHED_POLICIES = {"normal": 0, "fifo": 1, "rr": 2, "batch": 3, "iso": 4, "idle": 5, "deadline": 6}


def _header(task: Object) -> str:
    from drgn.helpers.linux.sched import task_cpu

    return task_header(task.pid.value_(), task.value_(), task_cpu(task), task_comm(task))


def render_parents(task: Object) -> str:
    """``ps -p``: the task's ancestry from the idle task down, one more space a level."""
    chain = task_ancestry(task)
    return (
        "".join(" " * depth + _header(t) + "\n" for depth, t in enumerate(reversed(chain))) + "\n"
    )


def render_children(task: Object) -> str:
    """``ps -c``: the task, then its children indented."""
    return (
        _header(task)
        + "\n"
        + "".join("  " + _header(child) + "\n" for child in task_children(task))
        + "\n"
    )


#: more argument/environment bytes than exec accepts (MAX_ARG_STRLEN * 32): corrupt
MAX_ARG_BYTES = 4 << 20


def _user_bytes(mm: Object, start: int, end: int) -> bytes:
    from drgn.helpers.linux.mm import access_remote_vm

    if not 0 <= end - start <= MAX_ARG_BYTES:
        raise drgn.FaultError("corrupt argument area", start)
    return access_remote_vm(mm, start, end - start) if end > start else b""


def render_arguments(prog: Program, rows: list[ProcessEntry]) -> str:
    """``ps -a``: each task's command line and environment, from its user memory."""
    blocks = []
    for row in rows:
        task = drgn.Object(prog, "struct task_struct *", row.task)
        block = ps_entry_header(row) + "\n"
        mm = task.mm.read_()
        if not mm:
            block += "ps: no user stack\n"
        else:
            arg_start = mm.arg_start.value_()
            try:
                args = _user_bytes(mm, arg_start, mm.arg_end.value_())
                env = _user_bytes(mm, mm.env_start.value_(), mm.env_end.value_())
            except drgn.FaultError:
                block += f"ps: cannot access user stack address: {arg_start:x}\n"
            else:
                block += "ARG: " + args.replace(b"\0", b" ").decode("utf-8", "replace") + "\n"
                variables = [v.decode("utf-8", "replace") for v in env.split(b"\0") if v]
                block += "".join(
                    ("ENV: " if i == 0 else "     ") + v + "\n" for i, v in enumerate(variables)
                )
        blocks.append(block + "\n")
    return "".join(blocks)


def render_times(prog: Program, rows: list[ProcessEntry], by_start: bool) -> str:
    """``ps -t``: run time, start time, user and system time of each task (all tasks:
    oldest first; named ones: in table order).  crash takes the run time as the uptime
    less the start time's whole seconds (a task started at 3.2 s of a 5.08 s uptime has
    run "2 s"), in jiffies at the kernel's HZ."""
    uptime, hz = uptime_jiffies(prog)
    tasks = [drgn.Object(prog, "struct task_struct *", row.task) for row in rows]
    starts = [task.start_time.value_() for task in tasks]
    order = sorted(range(len(rows)), key=starts.__getitem__) if by_start else range(len(rows))
    blocks = []
    for index in order:
        row, task, start = rows[index], tasks[index], starts[index]
        run = max(uptime - start // 1_000_000_000 * hz, 0) // hz
        blocks.append(
            f"{ps_entry_header(row)}\n    RUN TIME: {uptime_text(run)}\n"
            f"  START TIME: {start}\n       UTIME: {task.utime.value_()}\n"
            f"       STIME: {task.stime.value_()}\n\n"
        )
    return "".join(blocks)


def render_last_arrival(prog: Program, rows: list[ProcessEntry], elapsed: bool) -> str:
    """``ps -l`` (each task's last_arrival, latest first) and ``ps -m`` (the time since,
    against its CPU's run-queue clock)."""
    from drgn.helpers.linux.sched import cpu_rq

    ordered = sorted(rows, key=lambda row: -row.last_arrival)
    if elapsed:
        clocks = {cpu: cpu_rq(prog, cpu).clock.value_() for cpu in for_each_cpu_in_dump(prog)}
        stamps = [elapsed_text(max(clocks[row.cpu] - row.last_arrival, 0)) for row in ordered]
    else:
        stamps = [str(row.last_arrival) for row in ordered]
    width = max((len(stamp) for stamp in stamps), default=0)
    return "".join(
        f"[{stamp:>{width}}] [{row.state}]  {ps_entry_header(row)}\n"
        for stamp, row in zip(stamps, ordered, strict=True)
    )


def parse_policies(text: str) -> set[int]:
    """``ps -y``'s comma-separated policies, by number or name."""
    policies = set()
    for word in text.split(","):
        word = word.strip().lower()
        if word.isdigit():
            policies.add(int(word))
        elif word in SCHED_POLICIES:
            policies.add(SCHED_POLICIES[word])
        else:
            raise CommandError(f"invalid scheduling policy: {word}")
    return policies


@register
class Ps(Command):
    """crash's ``ps`` (-k, -u, -A, -G, -y, -S, -p, -c, -a, -t, -l, -m and filters; other options
    through drgn)."""

    name = "ps"
    help = "display process status information"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-k", dest="kernel", action="store_true", help="kernel threads only")
        parser.add_argument("-u", dest="user", action="store_true", help="user tasks only")
        parser.add_argument(
            "-A", dest="active", action="store_true", help="only the task active on each CPU"
        )
        parser.add_argument(
            "-G", dest="leaders", action="store_true", help="only thread group leaders"
        )
        parser.add_argument(
            "-y",
            dest="policy",
            metavar="policy",
            help="only tasks of these scheduling policies (number or name)",
        )
        parser.add_argument(
            "-S", dest="summary", action="store_true", help="the number of tasks in each state"
        )
        parser.add_argument(
            "-p", dest="parents", action="store_true", help="each task's parental hierarchy"
        )
        parser.add_argument("-c", dest="children", action="store_true", help="each task's children")
        parser.add_argument(
            "-a",
            dest="arguments",
            action="store_true",
            help="command line arguments and environment",
        )
        parser.add_argument(
            "-t",
            dest="times",
            action="store_true",
            help="run time, start time, user and system time",
        )
        parser.add_argument(
            "-l",
            dest="last_arrival",
            action="store_true",
            help="last_arrival timestamps, latest first",
        )
        parser.add_argument(
            "-m",
            dest="since_arrival",
            action="store_true",
            help="time since last_arrival, most recent first",
        )
        parser.add_argument(
            "targets",
            nargs="*",
            metavar="pid | task | command",
            help="restrict to these PIDs, task addresses or command names",
        )

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        if args.kernel and args.user:
            raise CommandError("-u and -k are mutually exclusive")
        rows = process_table(prog)
        # crash reports a PID no task has, then goes on with the others
        unknown = "".join(
            f"ps: invalid task or pid value: {target}\n\n"
            for target in args.targets
            if target.isdigit() and not any(r.pid == int(target) for r in rows)
        )
        if args.kernel:
            rows = [r for r in rows if r.kernel_thread]
        if args.user:
            rows = [r for r in rows if not r.kernel_thread]
        if args.active:
            rows = [r for r in rows if r.active]
        if args.leaders:
            rows = [r for r in rows if r.group_leader]
        if args.policy:
            policies = parse_policies(args.policy)
            rows = [r for r in rows if r.policy in policies]
        if args.targets:
            rows = [r for r in rows if any(_matches(r, t) for t in args.targets)]
        if args.summary:
            counts = {code: sum(r.state == code for r in rows) for code in ALL_STATE_CODES}
            text = "".join(f"  {code}: {n}\n" for code, n in counts.items() if n)
        elif args.parents or args.children:
            render = render_parents if args.parents else render_children
            text = "".join(render(drgn.Object(prog, "struct task_struct *", r.task)) for r in rows)
        elif args.arguments:
            text = render_arguments(prog, rows)
        elif args.times:
            text = render_times(prog, rows, by_start=not args.targets)
        elif args.last_arrival or args.since_arrival:
            text = render_last_arrival(prog, rows, args.since_arrival)
        else:
            text = PS_HEADER + "\n" + "".join(ps_row(r) + "\n" for r in rows)
        return Result(unknown + text, [r.to_json() for r in rows])


def _matches(row: ProcessEntry, target: str) -> bool:
    if target.isdigit() and int(target) == row.pid:
        return True
    try:
        if int(target, 16) == row.task:
            return True
    except ValueError:
        pass
    return target == row.comm
