"""``ps``: the process table as crash prints it."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import drgn

from kdumpkit.analyze.commands.base import Command, CommandError, Result, register
from kdumpkit.analyze.commands.common import (
    MAX_TASKS,
    active_tasks,
    for_each_task_with_idle,
    is_kernel_thread,
    task_comm,
)

if TYPE_CHECKING:
    from drgn import Object, Program

HEADER = "      PID    PPID  CPU       TASK        ST  %MEM      VSZ      RSS  COMM"

#: crash's two-letter states, in the kernel's TASK_REPORT bit order (fs/proc/array.c)
_STATE_CODES = ("RU", "IN", "UN", "ST", "TR", "DE", "ZO", "PA")
TASK_REPORT = 0x7F
TASK_IDLE = 0x402  # TASK_UNINTERRUPTIBLE | TASK_NOLOAD
# enum { MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES } (include/linux/mm_types_task.h),
# used when the enumerators are not in BTF.
_MM_COUNTERS = {"MM_FILEPAGES": 0, "MM_ANONPAGES": 1, "MM_SWAPENTS": 2, "MM_SHMEMPAGES": 3}


def task_state_raw(task: Object) -> int:
    """The task's state word."""
    try:
        return task.member_("__state").value_()
    except LookupError:
        # Linux kernel commit 2f064a59a11f ("sched: Change task_struct::state") (v5.14)
        # renamed state to __state.
        return task.state.value_()


def task_state_code(task: Object) -> str:
    """crash's ``ST`` column: RU, IN, UN, ID, ST, TR, ZO, DE, PA."""
    state = task_state_raw(task)
    if state == TASK_IDLE:
        return "ID"
    bits = (state | task.exit_state.value_()) & TASK_REPORT
    return _STATE_CODES[bits.bit_length()] if bits else "RU"


def _mm_counter_index(prog: Program, name: str) -> int:
    try:
        return prog.constant(name).value_()
    except LookupError:
        return _MM_COUNTERS[name]


def percpu_counter_total(counter: Object) -> int:
    """A ``struct percpu_counter``'s count plus the deltas of every CPU in the dump."""
    from drgn.helpers.linux.percpu import per_cpu_ptr

    from kdumpkit.analyze.commands.common import for_each_cpu_in_dump

    total = counter.count.value_()
    for cpu in for_each_cpu_in_dump(counter.prog_):
        total += per_cpu_ptr(counter.counters, cpu)[0].value_()
    return total


def task_rss_pages(task: Object) -> int:
    """Resident pages of the task's mm (file + anon + shmem), as /proc and crash count them."""
    mm = task.mm.read_()
    if not mm:
        return 0
    prog = task.prog_
    indexes = [
        _mm_counter_index(prog, n) for n in ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SHMEMPAGES")
    ]
    rss_stat = mm.rss_stat
    if rss_stat.type_.kind == drgn.TypeKind.ARRAY:
        # Linux kernel commit f1a7941243c1 ("mm: convert mm's rss stats into
        # percpu_counter") (v6.2) made rss_stat an array of percpu counters: the count
        # plus every CPU's pending delta, offline CPUs' included, as crash sums them.
        return max(sum(percpu_counter_total(rss_stat[i]) for i in indexes), 0)
    total = sum(rss_stat.count[i].counter.value_() for i in indexes)
    # Before v6.2 each thread caches deltas (SPLIT_RSS_COUNTING) that crash adds in.
    from drgn.helpers.linux.pid import for_each_task_in_group

    try:
        for thread in for_each_task_in_group(task, include_self=True):
            total += sum(thread.rss_stat.count[i].value_() for i in indexes)
    except AttributeError:
        pass
    return max(total, 0)


def task_row(
    task: Object, active: dict[int, int], total_pages: int, page_kb: int
) -> dict[str, Any]:
    """One ``ps`` record."""
    from drgn.helpers.linux.sched import task_cpu

    address = task.value_()
    rss_pages = task_rss_pages(task)
    mm = task.mm.read_()
    vsz_kb = mm.total_vm.value_() * page_kb if mm else 0
    parent = task.real_parent.read_()
    return {
        "pid": task.pid.value_(),
        "ppid": parent.pid.value_() if parent and task.pid.value_() else 0,
        "cpu": task_cpu(task),
        "task": address,
        "state": task_state_code(task),
        "mem_percent": rss_pages * 100 / total_pages if total_pages else 0.0,
        "vsz_kb": vsz_kb,
        "rss_kb": rss_pages * page_kb,
        "comm": task_comm(task),
        "kernel_thread": is_kernel_thread(task) or not mm,
        "active": active.get(address) == task_cpu(task),
        "policy": task.policy.value_(),
        "group_leader": task.group_leader.value_() == address,
        "last_arrival": task.sched_info.last_arrival.value_(),
    }


def render_row(row: dict[str, Any]) -> str:
    """crash's ``ps`` line; ``>`` marks the task running on its CPU."""
    comm = f"[{row['comm']}]" if row["kernel_thread"] else row["comm"]
    marker = ">" if row["active"] else " "
    return (
        f"{marker}{row['pid']:>8}{row['ppid']:>8}{row['cpu']:>4}  {row['task']:016x}"
        f"  {row['state']}{row['mem_percent']:>6.1f}{row['vsz_kb']:>9}{row['rss_kb']:>9}"
        f"  {comm}"
    )


def physical_pages(prog: Program) -> int:
    """The pages of RAM the nodes hold: crash's %MEM divides by this, not by totalram.

    On arm64 crash divides by the pfn of ``high_memory`` instead (the end of the linear
    map's RAM: RAM there starts at 1 GiB on QEMU's virt machine, so it is twice the RAM).
    """
    from drgn.helpers.linux.mmzone import for_each_online_pgdat

    if prog.platform is not None and prog.platform.arch == drgn.Architecture.AARCH64:
        from drgn.helpers.linux.mm import virt_to_phys

        try:
            return virt_to_phys(prog["high_memory"]).value_() // prog["PAGE_SIZE"].value_()
        except (LookupError, drgn.FaultError, ValueError):
            pass
    return sum(pgdat.node_present_pages.value_() for pgdat in for_each_online_pgdat(prog))


def process_table(prog: Program) -> list[dict[str, Any]]:
    """Every task (idle tasks included), sorted by PID then CPU as crash sorts them."""
    page_kb = prog["PAGE_SIZE"].value_() // 1024
    total_pages = physical_pages(prog)
    active = active_tasks(prog)
    rows = [task_row(task, active, total_pages, page_kb) for task in for_each_task_with_idle(prog)]
    rows.sort(key=lambda row: (row["pid"], row["cpu"]))
    return rows


#: scheduling policies by crash's names for ``ps -y`` (include/uapi/linux/sched.h)
SCHED_POLICIES = {"normal": 0, "fifo": 1, "rr": 2, "batch": 3, "iso": 4, "idle": 5, "deadline": 6}
#: ``ps -S`` counts states in this order (the TASK_REPORT bits, then ID)
_SUMMARY_ORDER = ("RU", "IN", "UN", "ST", "TR", "DE", "ZO", "PA", "ID")


def task_header(task: Object) -> str:
    """crash's one-line task header: ``PID: 1        TASK: ...  CPU: 0    COMMAND: "init"``."""
    from drgn.helpers.linux.sched import task_cpu

    return (
        f"PID: {task.pid.value_():<8} TASK: {task.value_():x}  CPU: {task_cpu(task):<3}  "
        f'COMMAND: "{task_comm(task)}"'
    )


def _row_header(row: dict[str, Any]) -> str:
    return (
        f"PID: {row['pid']:<8} TASK: {row['task']:x}  CPU: {row['cpu']:<3}  "
        f'COMMAND: "{row["comm"]}"'
    )


def render_parents(task: Object) -> str:
    """``ps -p``: the task's ancestry from the idle task down, one more space a level."""
    chain = [task]
    while chain[-1].pid.value_() and len(chain) < MAX_TASKS:
        chain.append(chain[-1].real_parent.read_())
    return (
        "".join(" " * depth + task_header(t) + "\n" for depth, t in enumerate(reversed(chain)))
        + "\n"
    )


def render_children(task: Object) -> str:
    """``ps -c``: the task, then its children indented."""
    from drgn.helpers.linux.list import list_for_each_entry

    children = list_for_each_entry("struct task_struct", task.children.address_of_(), "sibling")
    return (
        task_header(task)
        + "\n"
        + "".join("  " + task_header(child) + "\n" for child in children)
        + "\n"
    )


#: more argument/environment bytes than exec accepts (MAX_ARG_STRLEN * 32): corrupt
MAX_ARG_BYTES = 4 << 20


def _user_bytes(mm: Object, start: int, end: int) -> bytes:
    from drgn.helpers.linux.mm import access_remote_vm

    if not 0 <= end - start <= MAX_ARG_BYTES:
        raise drgn.FaultError("corrupt argument area", start)
    return access_remote_vm(mm, start, end - start) if end > start else b""


def render_arguments(prog: Program, rows: list[dict[str, Any]]) -> str:
    """``ps -a``: each task's command line and environment, from its user memory."""
    blocks = []
    for row in rows:
        task = drgn.Object(prog, "struct task_struct *", row["task"])
        block = _row_header(row) + "\n"
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


def render_times(prog: Program, rows: list[dict[str, Any]], by_start: bool) -> str:
    """``ps -t``: run time, start time, user and system time of each task (all tasks:
    oldest first; named ones: in table order).  crash takes the run time as the uptime
    less the start time's whole seconds (a task started at 3.2 s of a 5.08 s uptime has
    run "2 s"), in jiffies at the kernel's HZ."""
    from kdumpkit.analyze.commands.sys import uptime_jiffies, uptime_text

    uptime, hz = uptime_jiffies(prog)
    tasks = [drgn.Object(prog, "struct task_struct *", row["task"]) for row in rows]
    starts = [task.start_time.value_() for task in tasks]
    order = sorted(range(len(rows)), key=starts.__getitem__) if by_start else range(len(rows))
    blocks = []
    for index in order:
        row, task, start = rows[index], tasks[index], starts[index]
        run = max(uptime - start // 1_000_000_000 * hz, 0) // hz
        blocks.append(
            f"{_row_header(row)}\n    RUN TIME: {uptime_text(run)}\n"
            f"  START TIME: {start}\n       UTIME: {task.utime.value_()}\n"
            f"       STIME: {task.stime.value_()}\n\n"
        )
    return "".join(blocks)


def render_last_arrival(prog: Program, rows: list[dict[str, Any]], elapsed: bool) -> str:
    """``ps -l`` (each task's last_arrival, latest first) and ``ps -m`` (the time since,
    against its CPU's run-queue clock)."""
    from drgn.helpers.linux.sched import cpu_rq

    from kdumpkit.analyze.commands.common import for_each_cpu_in_dump

    ordered = sorted(rows, key=lambda row: -row["last_arrival"])
    if elapsed:
        clocks = {cpu: cpu_rq(prog, cpu).clock.value_() for cpu in for_each_cpu_in_dump(prog)}
        stamps = [elapsed_text(max(clocks[row["cpu"]] - row["last_arrival"], 0)) for row in ordered]
    else:
        stamps = [str(row["last_arrival"]) for row in ordered]
    width = max((len(stamp) for stamp in stamps), default=0)
    return "".join(
        f"[{stamp:>{width}}] [{row['state']}]  {_row_header(row)}\n"
        for stamp, row in zip(stamps, ordered, strict=True)
    )


def elapsed_text(nanoseconds: int) -> str:
    """``D HH:MM:SS.mmm``."""
    days, rest = divmod(nanoseconds, 86400 * 10**9)
    hours, rest = divmod(rest, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    seconds, rest = divmod(rest, 10**9)
    return f"{days} {hours:02d}:{minutes:02d}:{seconds:02d}.{rest // 10**6:03d}"


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
            if target.isdigit() and not any(r["pid"] == int(target) for r in rows)
        )
        if args.kernel:
            rows = [r for r in rows if r["kernel_thread"]]
        if args.user:
            rows = [r for r in rows if not r["kernel_thread"]]
        if args.active:
            rows = [r for r in rows if r["active"]]
        if args.leaders:
            rows = [r for r in rows if r["group_leader"]]
        if args.policy:
            policies = parse_policies(args.policy)
            rows = [r for r in rows if r["policy"] in policies]
        if args.targets:
            rows = [r for r in rows if any(_matches(r, t) for t in args.targets)]
        if args.summary:
            counts = {code: sum(r["state"] == code for r in rows) for code in _SUMMARY_ORDER}
            text = "".join(f"  {code}: {n}\n" for code, n in counts.items() if n)
        elif args.parents or args.children:
            render = render_parents if args.parents else render_children
            text = "".join(
                render(drgn.Object(prog, "struct task_struct *", r["task"])) for r in rows
            )
        elif args.arguments:
            text = render_arguments(prog, rows)
        elif args.times:
            text = render_times(prog, rows, by_start=not args.targets)
        elif args.last_arrival or args.since_arrival:
            text = render_last_arrival(prog, rows, args.since_arrival)
        else:
            text = HEADER + "\n" + "".join(render_row(r) + "\n" for r in rows)
        return Result(unknown + text, rows)


def _matches(row: dict[str, Any], target: str) -> bool:
    if target.isdigit() and int(target) == row["pid"]:
        return True
    try:
        if int(target, 16) == row["task"]:
            return True
    except ValueError:
        pass
    return target == row["comm"]
