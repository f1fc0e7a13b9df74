"""``bt``: kernel stack backtraces in crash's format, unwound with ORC from the dump."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from kdumpkit.analyze.commands.base import Command, CommandError, Result, register
from kdumpkit.analyze.commands.common import find_task_arg
from kdumpkit.analyze.commands.stacktext import backtrace
from kdumpkit.analyze.context import selected_task
from kdumpkit.analyze.facts.cpus import cpu_tasks
from kdumpkit.analyze.facts.tasks import crashing_task, for_each_task_with_idle

if TYPE_CHECKING:
    from drgn import Object, Program

#: More CPUs than this in one ``-c`` range is a typing error.
MAX_CPUS = 1 << 13


def resolve_task(prog: Program, target: str) -> Object:
    """A PID or a task address; an address must be one of the kernel's tasks."""
    task = find_task_arg(prog, target)
    if not target.strip().isdigit():
        known = {t.value_() for t in for_each_task_with_idle(prog)}
        if task.value_() not in known:
            raise CommandError(f"invalid task or pid value: {target}")
    return task


@register
class Bt(Command):
    name = "bt"
    help = "backtrace of a task (the panic task by default), all CPUs with -a"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "-a", dest="all_cpus", action="store_true", help="the active task on each CPU"
        )
        parser.add_argument(
            "-c",
            dest="cpus",
            action="append",
            default=[],
            metavar="cpu",
            help="the active task on this CPU (repeatable, or 0,1)",
        )
        parser.add_argument(
            "-f", dest="full", action="store_true", help="also show the stack data of each frame"
        )
        parser.add_argument(
            "-F",
            dest="symbolic",
            action="count",
            default=0,
            help="like -f, with text symbols and [slab cache] names (-FF: [address:slab cache])",
        )
        parser.add_argument(
            "-s", dest="with_offset", action="store_true", help="show symbol+offset"
        )
        parser.add_argument(
            "-x", dest="hex_offsets", action="store_true", help="offsets in hexadecimal (-s)"
        )
        parser.add_argument(
            "-d", dest="decimal", action="store_true", help="offsets in decimal (-s, default)"
        )
        parser.add_argument(
            "targets",
            nargs="*",
            metavar="pid | taskp",
            help="a PID (decimal) or a task_struct address (hex)",
        )

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        work: list[tuple[Object, int | None]] = []
        if args.all_cpus:
            work = [(task, cpu) for cpu, task in cpu_tasks(prog)]
        elif args.cpus:
            wanted = _parse_cpus(args.cpus)
            running = dict(cpu_tasks(prog))
            for cpu in wanted:
                if cpu not in running:
                    raise CommandError(f"invalid cpu number: {cpu}")
                work.append((running[cpu], cpu))
        elif args.targets:
            work = [(resolve_task(prog, target), None) for target in args.targets]
        else:
            task = selected_task(prog) or crashing_task(prog)
            if task is None:
                raise CommandError("no panic task; give a PID or task address")
            work = [(task, None)]
        blocks, rows = [], []
        for task, on_cpu in work:
            text, row = backtrace(
                prog,
                task,
                cpu=on_cpu,
                full=args.full,
                with_offset=args.with_offset,
                symbolic=args.symbolic,
                hex_offsets=args.hex_offsets and not args.decimal,
            )
            blocks.append(text)
            rows.append(row)
        return Result("\n".join(blocks), rows)


def _parse_cpus(values: list[str]) -> list[int]:
    cpus: list[int] = []
    for value in values:
        for part in value.split(","):
            try:
                if "-" in part:
                    low, high = (int(x) for x in part.split("-", 1))
                    if not 0 <= high - low < MAX_CPUS:
                        raise ValueError(part)
                    cpus.extend(range(low, high + 1))
                else:
                    cpus.append(int(part))
            except ValueError:
                raise CommandError(f"invalid cpu specification: {value}") from None
    return cpus
