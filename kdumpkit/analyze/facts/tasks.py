"""Tasks: the task list as crash's task table holds it, task states, the panic task,
and the process entries ``ps`` lists."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import drgn

from kdumpkit.analyze.context import cached, program_vmcoreinfo, selected_task
from kdumpkit.analyze.facts.cpus import active_tasks, for_each_cpu_in_dump, panic_cpu_task
from kdumpkit.analyze.facts.memory import percent_mem_pages, task_rss_pages
from kdumpkit.analyze.guard import note_damage
from kdumpkit.kernel.x86_64_layout import KERNEL_SPACE_START

if TYPE_CHECKING:
    from drgn import Object, Program

#: more tasks than any kernel runs (PID_MAX_LIMIT): a longer list is corrupt
MAX_TASKS = 1 << 22
#: include/linux/sched.h
PF_KTHREAD = 0x00200000
TASK_REPORT = 0x7F
TASK_IDLE = 0x402  # TASK_UNINTERRUPTIBLE | TASK_NOLOAD
#: crash's two-letter states, in the kernel's TASK_REPORT bit order (fs/proc/array.c)
STATE_CODES = ("RU", "IN", "UN", "ST", "TR", "DE", "ZO", "PA")
#: every state code crash knows, in ``ps -S``'s order (the TASK_REPORT bits, then ID)
ALL_STATE_CODES = (*STATE_CODES, "ID")
#: kernel state bits named as crash's ``set`` and start-up banner name them
STATE_NAMES = (
    "TASK_RUNNING",
    "TASK_INTERRUPTIBLE",
    "TASK_UNINTERRUPTIBLE",
    "TASK_STOPPED",
    "TASK_TRACED",
    "EXIT_DEAD",
    "EXIT_ZOMBIE",
    "TASK_PARKED",
)


# --- the panic task and the session's task ------------------------------------------------


def panic_task(prog: Program) -> Object | None:
    """The task that panicked (``struct task_struct *``), or None if none did."""

    def compute() -> Object | None:
        try:
            return prog.crashed_thread().object
        except (ValueError, LookupError, drgn.FaultError):
            return None

    return cached(prog, "panic_task", compute)


def context_task(prog: Program) -> Object | None:
    """The task commands default to: set by ``set``, else the panic task."""
    task = selected_task(prog)
    return task if task is not None else panic_task(prog)


def crashing_task(prog: Program) -> Object | None:
    """The task current on the panic CPU (read without typed globals), else the
    crashed thread drgn finds: ``bt``'s default task."""
    task = panic_cpu_task(prog)
    return task if task is not None else panic_task(prog)


# --- the task list --------------------------------------------------------------------------


def for_each_task_with_idle(prog: Program) -> Iterator[Object]:
    """Every task: the per-CPU idle tasks, then each process of init_task's task list
    and its threads, as crash's task table holds them.

    The task list is walked rather than the PID IDR: an IDR node in a page the dump
    filtered out would hide every task behind it.  A task whose memory is missing is
    skipped; where it breaks the list, the list is walked backwards too, so only the
    missing task is lost.  A looping list stops at the first repeat.
    """
    from drgn.helpers.linux.sched import idle_task

    seen: set[int] = set()
    for cpu in for_each_cpu_in_dump(prog):
        task = idle_task(prog, cpu)
        seen.add(task.value_())
        yield task
    for process in _task_list(prog, seen):
        try:
            threads = list(_threads(process, len(seen)))
        except drgn.FaultError:
            threads = [process]
        for task in threads:
            if task.value_() in seen:
                continue
            if not _readable(task):
                note_damage(
                    prog, f"task {task.value_():#x}", "task_struct not in the dump; skipped"
                )
                continue
            seen.add(task.value_())
            yield task


def _readable(task: Object) -> bool:
    try:
        task.pid.value_()
    except drgn.FaultError:
        return False
    return True


def _task_list(prog: Program, seen: set[int]) -> Iterator[Object]:
    """init_task.tasks forwards, then backwards from the other end if a fault broke it."""
    head = prog["init_task"].tasks.address_of_()
    head_address = head.value_()
    reached: set[int] = set()
    for member in ("next", "prev"):
        node = head
        while len(seen) + len(reached) < MAX_TASKS:
            try:
                node = getattr(node, member).read_()
                address = node.value_()
                if address == head_address or address in reached:
                    return  # round the whole list: nothing is missing
                task = drgn.container_of(node, "struct task_struct", "tasks")
                task.pid.value_()
            except drgn.FaultError:
                # a task in a page the dump lacks: try from the other end
                note_damage(
                    prog,
                    f"task list ({member})",
                    f"a task_struct after {node.value_():#x} is not in the dump; "
                    "walked from the other end",
                )
                break
            reached.add(address)
            yield task


def _threads(process: Object, count: int) -> Iterator[Object]:
    """The process and its other threads (signal->thread_head)."""
    from drgn.helpers.linux.pid import for_each_task_in_group

    yield process
    for index, thread in enumerate(for_each_task_in_group(process)):
        if count + index >= MAX_TASKS:
            return
        yield thread


def tasks_with_pid(prog: Program, pid: int) -> list[Object]:
    """The tasks with this PID: one, or for PID 0 every CPU's idle task; none when no
    task has it."""
    if pid == 0:
        from drgn.helpers.linux.sched import idle_task

        return [idle_task(prog, cpu) for cpu in for_each_cpu_in_dump(prog)]
    from drgn.helpers.linux.pid import find_task

    task = find_task(prog, pid)
    return [task] if task else []


def is_task(task: Object) -> bool:
    """Whether a pointer is a task the kernel knows: found by its PID, or an idle task."""
    from drgn.helpers.linux.pid import find_task
    from drgn.helpers.linux.sched import idle_task

    if task.value_() < KERNEL_SPACE_START:
        return False
    try:
        pid = task.pid.value_()
        if pid:
            return bool(find_task(task.prog_, pid).value_() == task.value_())
        return any(
            idle_task(task.prog_, cpu).value_() == task.value_()
            for cpu in for_each_cpu_in_dump(task.prog_)
        )
    except (drgn.FaultError, OverflowError, ValueError):
        return False  # unreadable, or a PID no task can have


# --- one task's facts -------------------------------------------------------------------


def task_comm(task: Object) -> str:
    """The task's comm as text."""
    return task.comm.string_().decode("utf-8", "replace")


def is_kernel_thread(task: Object) -> bool:
    """Whether the task is a kernel thread (PF_KTHREAD), as crash brackets its name."""
    return bool(task.flags.value_() & PF_KTHREAD)


def task_state_raw(task: Object) -> int:
    """The task's state word."""
    try:
        return int(task.member_("__state").value_())
    except LookupError:
        # Linux kernel commit 2f064a59a11f ("sched: Change task_struct::state") (v5.14)
        # renamed state to __state.
        return int(task.state.value_())


def task_state_code(task: Object) -> str:
    """crash's ``ST`` column: RU, IN, UN, ID, ST, TR, ZO, DE, PA."""
    state = task_state_raw(task)
    if state == TASK_IDLE:
        return "ID"
    bits = (state | task.exit_state.value_()) & TASK_REPORT
    return STATE_CODES[bits.bit_length()] if bits else "RU"


def task_state_name(task: Object) -> str:
    """``TASK_RUNNING``, ``TASK_INTERRUPTIBLE``..., ``TASK_IDLE``."""
    state = task_state_raw(task)
    if state == TASK_IDLE:
        return "TASK_IDLE"
    bits = (state | task.exit_state.value_()) & TASK_REPORT
    return STATE_NAMES[bits.bit_length()] if bits else "TASK_RUNNING"


def written_by_kdump(prog: Program) -> bool:
    """Whether the dump was captured through kdump: ``__crash_kexec`` stamps CRASHTIME
    into VMCOREINFO; a hypervisor's dump of a panicked guest has none."""
    vmcoreinfo = program_vmcoreinfo(prog)
    return vmcoreinfo is None or vmcoreinfo.crashtime is not None


def panic_kind(task: Object) -> str:
    """``PANIC``, or ``SYSRQ`` as crash says when it had to find the panic task itself
    (no kdump) and its stack runs through sysrq's crash handler."""
    from kdumpkit.analyze.stack import stack_trace

    prog = task.prog_
    if written_by_kdump(prog):
        return "PANIC"
    try:
        frames = stack_trace(prog, task)
    except (drgn.FaultError, LookupError, ValueError):
        return "PANIC"
    if any(frame.function == "sysrq_handle_crash" for frame in frames):
        return "SYSRQ"
    return "PANIC"


def task_activity(task: Object) -> str | None:
    """``PANIC`` or ``SYSRQ`` for the panic task, ``ACTIVE`` for a task running on a
    CPU, else None (crash's annotation after the state name)."""
    panicked = panic_task(task.prog_)
    if panicked is not None and panicked.value_() == task.value_():
        return panic_kind(task)
    if task.value_() in active_tasks(task.prog_):
        return "ACTIVE"
    return None


def task_thread_info_address(task: Object) -> int:
    """The address of the task's thread_info (the task itself with
    THREAD_INFO_IN_TASK)."""
    from drgn.helpers.linux.sched import task_thread_info

    try:
        return int(task_thread_info(task).value_())
    except LookupError:
        return int(task.value_())


@dataclass
class TaskContext:
    """What crash's context display (``set``, the start-up banner) shows of a task."""

    pid: int
    comm: str
    task: int
    thread_info: int
    cpu: int
    #: TASK_RUNNING, TASK_INTERRUPTIBLE...
    state: str
    #: PANIC, SYSRQ, ACTIVE or None
    activity: str | None

    def to_json(self) -> dict[str, Any]:
        """The context as JSON-ready data."""
        return asdict(self)


def task_context(task: Object) -> TaskContext:
    """The task's context as crash's ``set`` displays it."""
    from drgn.helpers.linux.sched import task_cpu

    return TaskContext(
        pid=task.pid.value_(),
        comm=task_comm(task),
        task=task.value_(),
        thread_info=task_thread_info_address(task),
        cpu=task_cpu(task),
        state=task_state_name(task),
        activity=task_activity(task),
    )


# --- the process table ------------------------------------------------------------------


@dataclass
class ProcessEntry:
    """One task as ``ps`` lists it."""

    pid: int
    ppid: int
    cpu: int
    task: int
    #: crash's two-letter state (RU, IN, UN...)
    state: str
    mem_percent: float
    vsz_kb: int
    rss_kb: int
    comm: str
    kernel_thread: bool
    #: running on its CPU at the crash
    active: bool
    policy: int
    group_leader: bool
    last_arrival: int

    def to_json(self) -> dict[str, Any]:
        """The entry as JSON-ready data."""
        return asdict(self)


def process_entry(
    task: Object, active: dict[int, int], total_pages: int, page_kb: int
) -> ProcessEntry:
    """One task's ``ps`` entry."""
    from drgn.helpers.linux.sched import task_cpu

    address = task.value_()
    rss_pages = task_rss_pages(task)
    mm = task.mm.read_()
    parent = task.real_parent.read_()
    cpu = task_cpu(task)
    return ProcessEntry(
        pid=task.pid.value_(),
        ppid=parent.pid.value_() if parent and task.pid.value_() else 0,
        cpu=cpu,
        task=address,
        state=task_state_code(task),
        mem_percent=rss_pages * 100 / total_pages if total_pages else 0.0,
        vsz_kb=mm.total_vm.value_() * page_kb if mm else 0,
        rss_kb=rss_pages * page_kb,
        comm=task_comm(task),
        kernel_thread=is_kernel_thread(task) or not mm,
        active=active.get(address) == cpu,
        policy=task.policy.value_(),
        group_leader=task.group_leader.value_() == address,
        last_arrival=task.sched_info.last_arrival.value_(),
    )


def process_entries(prog: Program, tasks: Iterable[Object]) -> list[ProcessEntry]:
    """The ``ps`` entries of these tasks, in their order."""
    page_kb = prog["PAGE_SIZE"].value_() // 1024
    total_pages = percent_mem_pages(prog)
    active = active_tasks(prog)
    return [process_entry(task, active, total_pages, page_kb) for task in tasks]


def process_table(prog: Program) -> list[ProcessEntry]:
    """Every task (idle tasks included), sorted by PID then CPU as crash sorts them."""
    entries = process_entries(prog, for_each_task_with_idle(prog))
    entries.sort(key=lambda entry: (entry.pid, entry.cpu))
    return entries


def task_ancestry(task: Object) -> list[Object]:
    """The task, its parent, ... up to the idle task (PID 0)."""
    chain = [task]
    while chain[-1].pid.value_() and len(chain) < MAX_TASKS:
        chain.append(chain[-1].real_parent.read_())
    return chain


def task_children(task: Object) -> list[Object]:
    """The task's children (its ``children`` list)."""
    from drgn.helpers.linux.list import list_for_each_entry

    return list(list_for_each_entry("struct task_struct", task.children.address_of_(), "sibling"))
