"""``alias``: crash's built-in command aliases."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from kdumpkit.analyze.commands.base import Command, CommandError, Result, register

if TYPE_CHECKING:
    from drgn import Program

#: crash 9.0.2's built-in aliases (cmdline.c), in its order
BUILTIN_ALIASES = (
    ("man", "help"),
    ("?", "help"),
    ("quit", "q"),
    ("sf", "set scroll off"),
    ("sn", "set scroll on"),
    ("hex", "set radix 16"),
    ("dec", "set radix 10"),
    ("g", "gdb"),
    ("px", "p -x"),
    ("pd", "p -d"),
    ("for", "foreach"),
    ("size", "*"),
    ("dmesg", "log"),
    ("lsmod", "mod"),
    ("last", "ps -l"),
)


@register
class Alias(Command):
    """crash's ``alias`` (listing; kdumpkit defines no aliases at run time)."""

    name = "alias"
    help = "command aliases"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("alias", nargs="?", help="show only this alias")
        parser.add_argument("command", nargs="*", help="(defining aliases is not supported)")

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        if args.command:
            raise CommandError(
                "defining aliases is not supported: kdumpkit has crash's built-in ones"
            )
        lines = ["ORIGIN   ALIAS    COMMAND"]
        rows = []
        for alias, command in BUILTIN_ALIASES:
            if args.alias and args.alias != alias:
                continue
            words = "".join(f"{word} " for word in command.split())
            lines.append(f"builtin  {alias:<7}  {words}")
            rows.append({"origin": "builtin", "alias": alias, "command": command})
        if args.alias and not rows:
            lines.append(f"alias does not exist: {args.alias}")
        return Result("".join(line + "\n" for line in lines), rows)
