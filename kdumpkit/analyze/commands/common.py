"""Argument parsing shared by the crash-compatible commands: tasks, addresses and
counts given as crash takes them, and crash's wording of a fault.  The facts the
commands show come from :mod:`kdumpkit.analyze.facts`, their text shapes from
:mod:`kdumpkit.analyze.crashformat`."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import drgn

from kdumpkit.analyze.commands.base import CommandError
from kdumpkit.analyze.facts.tasks import is_task

if TYPE_CHECKING:
    from drgn import Object, Program


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


def parse_address(prog: Program, text: str) -> int:
    """An address given as crash takes it: hex (with or without 0x), a symbol, symbol+off."""
    expr = text.strip()
    match = re.fullmatch(r"([A-Za-z_.$][\w.$]*)\s*(?:([+-])\s*(0x[0-9a-fA-F]+|\d+))?", expr)
    if match and not re.fullmatch(r"[0-9a-fA-F]+", match.group(1)):
        try:
            base: int = prog.symbol(match.group(1)).address
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


def fault_message(exc: drgn.FaultError, kind: str = "KVADDR") -> str:
    """crash's wording for an unreadable address."""
    space = "64-bit PHYSADDR" if kind == "PHYSADDR" else "64-bit KVADDR"
    return f'invalid kernel virtual address: {exc.address:x}  type: "{space}"'
