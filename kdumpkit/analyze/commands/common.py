"""Helpers shared by the crash-compatible commands: the task context, addresses and
symbols as crash prints them, and sizes in crash's units."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import drgn

from kdumpkit.analyze.commands.base import CommandError

if TYPE_CHECKING:
    from drgn import Object, Program

#: the lowest kernel virtual address on x86_64 (the upper canonical half)
KERNEL_HALF = 0xFFFF800000000000
#: prog.cache key of the task the session's commands act on (crash's "current context").
CONTEXT_KEY = "kdumpkit.context"


# --- the task context ---------------------------------------------------------------------


def panic_task(prog: Program) -> Object | None:
    """The task that panicked (``struct task_struct *``), or None if none did."""
    cached = prog.cache.get("kdumpkit.panic_task", False)
    if cached is not False:
        return cached
    try:
        task = prog.crashed_thread().object
    except (ValueError, LookupError, drgn.FaultError):
        task = None
    prog.cache["kdumpkit.panic_task"] = task
    return task


def context_task(prog: Program) -> Object | None:
    """The task commands default to: set by ``set``, else the panic task."""
    task = prog.cache.get(CONTEXT_KEY)
    if task is None:
        # drgn's crash commands keep theirs in prog.config; either ``set`` counts.
        task = prog.config.get("crash_context")
    return task if task is not None else panic_task(prog)


def set_context_task(prog: Program, task: Object) -> None:
    """Make ``task`` the default task of later commands (crash's ``set PID``), for our
    commands and for drgn's crash-compatible ones alike."""
    prog.cache[CONTEXT_KEY] = task
    prog.config["crash_context"] = task


#: more tasks than any kernel runs (PID_MAX_LIMIT): a longer list is corrupt
MAX_TASKS = 1 << 22


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
            if task.value_() not in seen and _readable(task):
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
                break  # a task in a page the dump lacks: try from the other end
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
    from drgn.helpers.linux.sched import cpu_curr

    cached = prog.cache.get("kdumpkit.active_tasks")
    if cached is None:
        cached = {}
        for cpu in for_each_cpu_in_dump(prog):
            cached[cpu_curr(prog, cpu).value_()] = cpu
        prog.cache["kdumpkit.active_tasks"] = cached
    return cached


def find_task_arg(prog: Program, text: str) -> Object:
    """A task named by crash's argument forms: a decimal PID or a task address in hex."""
    from drgn.helpers.linux.pid import find_task

    value = text.strip()
    try:
        if re.fullmatch(r"\d+", value) and len(value) < 10:
            task = find_task(prog, int(value))
            if not task:
                # The idle tasks are PID 0 and not in the PID hash.
                if int(value) == 0:
                    from drgn.helpers.linux.sched import idle_task

                    return idle_task(prog, 0)
                raise CommandError(f"invalid task or pid value: {text}")
            return task
        address = int(value.removeprefix("0x"), 16)
    except ValueError:
        raise CommandError(f"invalid task or pid value: {text}") from None
    task = drgn.Object(prog, "struct task_struct *", address)
    if not is_task(task):
        raise CommandError(f"invalid task or pid value: {text}")
    return task


def is_task(task: Object) -> bool:
    """Whether a pointer is a task the kernel knows: found by its PID, or an idle task."""
    from drgn.helpers.linux.pid import find_task
    from drgn.helpers.linux.sched import idle_task

    if task.value_() < KERNEL_HALF:
        return False
    try:
        pid = task.pid.value_()
        if pid:
            return find_task(task.prog_, pid).value_() == task.value_()
        return any(
            idle_task(task.prog_, cpu).value_() == task.value_()
            for cpu in for_each_cpu_in_dump(task.prog_)
        )
    except (drgn.FaultError, OverflowError, ValueError):
        return False  # unreadable, or a PID no task can have


def task_comm(task: Object) -> str:
    """The task's comm as text."""
    return task.comm.string_().decode("utf-8", "replace")


def is_kernel_thread(task: Object) -> bool:
    """Whether the task is a kernel thread (PF_KTHREAD), as crash brackets its name."""
    pf_kthread = 0x00200000
    return bool(task.flags.value_() & pf_kthread)


# --- addresses, symbols and values ----------------------------------------------------------


def parse_address(prog: Program, text: str) -> int:
    """An address given as crash takes it: hex (with or without 0x), a symbol, symbol+off."""
    expr = text.strip()
    match = re.fullmatch(r"([A-Za-z_.$][\w.$]*)\s*(?:([+-])\s*(0x[0-9a-fA-F]+|\d+))?", expr)
    if match and not re.fullmatch(r"[0-9a-fA-F]+", match.group(1)):
        try:
            base = prog.symbol(match.group(1)).address
        except LookupError:
            raise CommandError(f"invalid expression: {text}") from None
        if match.group(2):
            delta = int(match.group(3), 0)
            base = base + delta if match.group(2) == "+" else base - delta
        return base
    try:
        return int(expr, 16)
    except ValueError:
        raise CommandError(f"invalid expression: {text}") from None


def parse_count(text: str) -> int:
    """A count argument: decimal, or hex with 0x."""
    try:
        value = int(text, 0)
    except ValueError:
        raise CommandError(f"invalid count: {text}") from None
    if value <= 0:
        raise CommandError(f"invalid count: {text}")
    return value


def symbol_type_letter(symbol: drgn.Symbol) -> str:
    """nm's letter for a symbol, as far as kallsyms' binding and kind tell it."""
    if symbol.kind == drgn.SymbolKind.FUNC:
        letter = "t"
    elif symbol.kind == drgn.SymbolKind.OBJECT:
        letter = "d"
    else:
        letter = "?"
    if symbol.binding == drgn.SymbolBinding.WEAK:
        return "W" if symbol.kind == drgn.SymbolKind.FUNC else "V"
    if symbol.binding == drgn.SymbolBinding.GLOBAL:
        return letter.upper()
    return letter


def _module_ranges(prog: Program) -> list[tuple[int, int, str]]:
    """(start, end, name) of every loaded module's core region, sorted (cached)."""
    ranges = prog.cache.get("kdumpkit.module_ranges")
    if ranges is None:
        from kdumpkit.analyze.commands.mod import module_table

        try:
            ranges = sorted(
                (row["base"], row["base"] + row["size"], row["name"]) for row in module_table(prog)
            )
        except (LookupError, drgn.FaultError, ValueError):
            ranges = []
        prog.cache["kdumpkit.module_ranges"] = ranges
    return ranges


def symbol_module(prog: Program, address: int) -> str | None:
    """The name of the module holding ``address``, or None for the core kernel."""
    try:
        module = prog.module(address)
    except LookupError:
        module = None
    if module is not None:
        return None if isinstance(module, drgn.MainModule) else module.name
    # Without debug files drgn knows no modules: the kernel's module list does.
    for start, end, name in _module_ranges(prog):
        if start <= address < end:
            return name
    return None


def symbolize(prog: Program, address: int) -> str | None:
    """``name`` or ``name+off`` for an address inside a symbol, else None."""
    try:
        symbol = prog.symbol(address)
    except LookupError:
        return None
    offset = address - symbol.address
    return f"{symbol.name}+{offset}" if offset else symbol.name


def fault_message(exc: drgn.FaultError, kind: str = "KVADDR") -> str:
    """crash's wording for an unreadable address."""
    space = "64-bit PHYSADDR" if kind == "PHYSADDR" else "64-bit KVADDR"
    return f'invalid kernel virtual address: {exc.address:x}  type: "{space}"'


# --- sizes ------------------------------------------------------------------------------


def size_text(nbytes: float) -> str:
    """A byte count as crash prints it: ``717 MB``, ``659.2 MB``, ``1 GB``, ``0``."""
    if nbytes == 0:
        return "0"
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if nbytes >= scale:
            text = f"{nbytes / scale:.1f}"
            if text.endswith(".0"):
                text = text[:-2]
            return f"{text} {unit}"
    return f"{int(nbytes)} bytes"


def read_global_int(prog: Program, name: str, size: int, signed: bool = False) -> int:
    """An integer global read through its kallsyms address (no type needed)."""
    address = prog.symbol(name).address
    data = prog.read(address, size)
    return int.from_bytes(data, "little", signed=signed)
