"""The CPUs in the dump and the tasks they ran at the crash."""

from __future__ import annotations

from typing import TYPE_CHECKING

import drgn

from kdumpkit.analyze.context import cached
from kdumpkit.analyze.stack import cpu_current_task, panic_cpu, saved_registers
from kdumpkit.dump.errors import DumpError

if TYPE_CHECKING:
    from drgn import Object, Program


def for_each_cpu_in_dump(prog: Program) -> list[int]:
    """The CPUs crash shows: every present CPU.  A panic that stops the others without
    kdump (a hypervisor's dump) marks them offline, yet their tasks and queues are there."""
    from drgn.helpers.linux.cpumask import for_each_online_cpu, for_each_present_cpu

    try:
        return list(for_each_present_cpu(prog))
    except LookupError:
        return list(for_each_online_cpu(prog))


def active_tasks(prog: Program) -> dict[int, int]:
    """task address -> CPU for the task running on each CPU at the crash."""

    def compute() -> dict[int, int]:
        from drgn.helpers.linux.sched import cpu_curr

        return {cpu_curr(prog, cpu).value_(): cpu for cpu in for_each_cpu_in_dump(prog)}

    return cached(prog, "active_tasks", compute)


def cpu_tasks(prog: Program) -> list[tuple[int, Object]]:
    """(cpu, task) for the task running on each CPU whose registers the dump saved
    (a CPU stopped by panic() is offline, yet its task is still the one it ran)."""
    found: dict[int, Object] = {}
    for cpu in sorted(saved_registers(prog)):
        try:
            task = cpu_current_task(prog, cpu)
        except (DumpError, drgn.FaultError):
            task = None
        if task is not None:
            found[cpu] = task
    if not found:
        for address, cpu in active_tasks(prog).items():
            found[cpu] = drgn.Object(prog, "struct task_struct *", address)
    return sorted(found.items())


def panic_cpu_task(prog: Program) -> Object | None:
    """The task current on the CPU that panicked (read without typed globals)."""
    try:
        return cpu_current_task(prog, panic_cpu(prog))
    except DumpError:
        return None


def cpu_pids(prog: Program) -> dict[int, int]:
    """CPU -> PID of the task it ran, from the dump's NT_PRSTATUS notes (no types)."""
    from kdumpkit.analyze.context import program_dump

    dump = program_dump(prog)
    return {status.cpu: status.pid for status in dump.prstatus} if dump is not None else {}
