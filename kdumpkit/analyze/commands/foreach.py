"""``foreach``: run a per-task command (``bt``) over many tasks, filtered as crash filters."""

from __future__ import annotations

import argparse
import fnmatch
from typing import TYPE_CHECKING, Any

from kdumpkit.analyze.commands.base import Command, CommandError, Result, register
from kdumpkit.analyze.commands.gdbvalue import task_struct_text
from kdumpkit.analyze.commands.stacktext import backtrace
from kdumpkit.analyze.crashformat import (
    PS_HEADER,
    bt_task_header,
    files_text,
    ps_row,
    signals_text,
    vm_text,
)
from kdumpkit.analyze.facts.cpus import active_tasks
from kdumpkit.analyze.facts.fs import task_files
from kdumpkit.analyze.facts.mm import task_memory, task_vmas
from kdumpkit.analyze.facts.signals import task_signals
from kdumpkit.analyze.facts.tasks import (
    ALL_STATE_CODES,
    for_each_task_with_idle,
    is_kernel_thread,
    process_entries,
    task_comm,
    task_state_code,
)
from kdumpkit.analyze.stack import cpu_current_task, saved_registers
from kdumpkit.dump.errors import DumpError

if TYPE_CHECKING:
    from drgn import Object, Program

#: crash's task-state keywords (``foreach RU bt``).
STATE_KEYWORDS = ALL_STATE_CODES
#: The per-task commands foreach can run.
SUPPORTED = ("bt", "files", "task", "ps", "vm", "sig")


def select_tasks(prog: Program, filters: list[str]) -> list[Object]:
    """Tasks matching any PID / task address / name / state, and every keyword filter
    (``kernel``, ``user``, ``active``); all tasks when no filter is given.  Sorted by PID
    then CPU, as crash walks its task table."""
    import drgn
    from drgn.helpers.linux.sched import task_cpu

    keywords = {f for f in filters if f in ("kernel", "user", "active")}
    selectors = [f for f in filters if f not in keywords]
    active = active_tasks(prog) if "active" in keywords else {}
    chosen: list[tuple[int, int, Object]] = []
    for task in all_tasks(prog):
        try:
            pid, cpu = task.pid.value_(), task_cpu(task)
            if "kernel" in keywords and not _is_kernel(task):
                continue
            if "user" in keywords and _is_kernel(task):
                continue
            if "active" in keywords and active.get(task.value_()) != cpu:
                continue
            if selectors and not any(_matches(task, s) for s in selectors):
                continue
        except drgn.FaultError:
            continue  # the task_struct's page is not in the dump
        chosen.append((pid, cpu, task))
    chosen.sort(key=lambda entry: (entry[0], entry[1]))
    return [task for _, _, task in chosen]


def all_tasks(prog: Program) -> list[Object]:
    """Every task, idle tasks included, from the PID namespace.  When a page on the way
    is missing from the dump, the tasks found before it are completed from both ends of
    ``init_task.tasks`` (and each thread group) and from each CPU's current task."""
    import drgn

    found: dict[int, Object] = {}
    # panic() takes the other CPUs offline; their idle tasks are still crash's tasks.
    found.update(_idle_tasks(prog))
    try:
        for task in for_each_task_with_idle(prog):
            found.setdefault(task.value_(), task)
        return list(found.values())
    except drgn.FaultError:
        pass
    for task in _tasks_from_task_list(prog):
        found.setdefault(task.value_(), task)
    for cpu in sorted(saved_registers(prog)):
        try:
            current = cpu_current_task(prog, cpu)
        except (DumpError, drgn.FaultError):
            current = None
        if current is not None:
            found.setdefault(current.value_(), current)
    return list(found.values())


def _idle_tasks(prog: Program) -> dict[int, Object]:
    import drgn
    from drgn.helpers.linux.cpumask import for_each_possible_cpu
    from drgn.helpers.linux.sched import idle_task

    idle: dict[int, Object] = {}
    try:
        for cpu in for_each_possible_cpu(prog):
            task = idle_task(prog, cpu)
            idle[task.value_()] = task
    except (LookupError, drgn.FaultError, ValueError):
        pass
    return idle


def _tasks_from_task_list(prog: Program) -> list[Object]:
    import drgn
    from drgn.helpers.linux.list import list_for_each_entry, list_for_each_entry_reverse
    from drgn.helpers.linux.pid import for_each_task_in_group

    tasks: dict[int, Object] = {}
    init_task = prog["init_task"].address_of_()
    tasks[init_task.value_()] = init_task
    head = init_task.tasks.address_of_()
    limit = 1 << 20  # a corrupt list must not run forever
    for walk in (list_for_each_entry, list_for_each_entry_reverse):
        try:
            for leader in walk("struct task_struct", head, "tasks"):
                if len(tasks) > limit or leader.value_() in tasks:
                    break
                tasks[leader.value_()] = leader
                try:
                    for thread in for_each_task_in_group(leader):
                        tasks.setdefault(thread.value_(), thread)
                except (LookupError, drgn.FaultError):
                    continue
        except drgn.FaultError:
            continue  # a page the dump lacks: keep the tasks before it, walk the other way
    return list(tasks.values())


def _is_kernel(task: Object) -> bool:
    return is_kernel_thread(task) or not task.mm.value_()


def _matches(task: Object, selector: str) -> bool:
    if selector.isdigit() and int(selector) == task.pid.value_():
        return True
    if selector in STATE_KEYWORDS:
        return task_state_code(task) == selector
    try:
        if int(selector, 16) == task.value_():
            return True
    except ValueError:
        pass
    name = selector.strip("\\")
    if any(c in name for c in "*?["):
        return fnmatch.fnmatchcase(task_comm(task), name)
    return name == task_comm(task)


@register
class Foreach(Command):
    name = "foreach"
    help = "run a command (bt) for each task, or the tasks given by pid, name, state"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "words",
            nargs=argparse.REMAINDER,
            metavar="[pid | taskp | name | state | kernel | user | active] command [flags]",
        )

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        words: list[str] = args.words
        index = next((i for i, word in enumerate(words) if word in SUPPORTED), None)
        if index is None:
            unknown = next((w for w in words if not w.startswith("-")), None)
            raise CommandError(
                f"{unknown or 'no command given'}: foreach runs only {', '.join(SUPPORTED)}"
            )
        filters, command, flags = words[:index], words[index], words[index + 1 :]
        tasks = select_tasks(prog, filters)
        if command == "ps":
            if flags:
                raise CommandError(f"foreach ps: unsupported option {flags[0]}")
            entries = process_entries(prog, tasks)
            text = PS_HEADER + "\n" + "".join(ps_row(e) + "\n" for e in entries)
            return Result(text, [e.to_json() for e in entries])
        blocks: list[str] = []
        rows: list[dict[str, Any]] = []
        for task in tasks:
            if command == "bt":
                text, row = backtrace(prog, task, **_bt_options(command, flags))
            elif command == "files":
                text, row = _files(task, flags)
            elif command == "sig":
                if flags:
                    raise CommandError(f"foreach sig: unsupported option {flags[0]}")
                text, row = _sig(task)
            elif command == "vm":
                if flags:
                    raise CommandError(f"foreach vm: unsupported option {flags[0]}")
                text, row = _vm(task)
            else:
                text, row = _task(task, flags)
            blocks.append(text)
            rows.append(row)
        # crash separates blocks by a blank line, but -R's member lists end with one
        separator = "" if command == "task" and "-R" in flags else "\n"
        return Result(separator.join(blocks), rows)


def _files(task: Object, flags: list[str]) -> tuple[str, dict[str, Any]]:
    from drgn.helpers.linux.sched import task_cpu

    if flags:
        raise CommandError(f"foreach files: unsupported option {flags[0]}")
    pid, address = task.pid.value_(), task.value_()
    files = task_files(task)
    header = bt_task_header(pid, address, task_cpu(task), task_comm(task))
    return files_text(header, files), {"pid": pid, "task": address, **files.to_json()}


def _vm(task: Object) -> tuple[str, dict[str, Any]]:
    from drgn.helpers.linux.sched import task_cpu

    pid, address = task.pid.value_(), task.value_()
    memory, vmas = task_memory(task), task_vmas(task)
    header = bt_task_header(pid, address, task_cpu(task), task_comm(task))
    text = vm_text(header, memory, vmas, task.prog_["PAGE_SIZE"].value_())
    return text, {"pid": pid, "task": address, **memory.to_json()}


def _sig(task: Object) -> tuple[str, dict[str, Any]]:
    from drgn.helpers.linux.sched import task_cpu

    pid, address = task.pid.value_(), task.value_()
    header = bt_task_header(pid, address, task_cpu(task), task_comm(task))
    # foreach separates the blocks by one blank line: not sig's own closing one
    text = signals_text(header, task_signals(task)).removesuffix("\n")
    return text, {"pid": pid, "task": address}


def _task(task: Object, flags: list[str]) -> tuple[str, dict[str, Any]]:
    members: list[str] = []
    hexadecimal = False
    words = iter(flags)
    for flag in words:
        if flag == "-R":
            members += next(words, "").split(",")
        elif flag == "-x":
            hexadecimal = True
        else:
            raise CommandError(f"foreach task: unsupported option {flag}")
    text = task_struct_text(task, [m for m in members if m], hexadecimal)
    return text, {"pid": task.pid.value_(), "task": task.value_()}


def _bt_options(command: str, flags: list[str]) -> dict[str, Any]:
    """``bt``'s per-task options given to foreach: -f, -F, -FF, -s, -x, -d (also
    combined, -fs)."""
    options: dict[str, Any] = {
        "full": False,
        "with_offset": False,
        "symbolic": 0,
        "hex_offsets": False,
    }
    for flag in flags:
        letters = flag[1:] if flag.startswith("-") and len(flag) > 1 else ""
        if not letters or set(letters) - set("fFsxd"):
            raise CommandError(f"foreach {command}: unsupported option {flag}")
        options["full"] = options["full"] or "f" in letters
        options["with_offset"] = options["with_offset"] or "s" in letters
        options["symbolic"] = max(options["symbolic"], letters.count("F"))
        if "x" in letters or "d" in letters:
            options["hex_offsets"] = "x" in letters
    return options
