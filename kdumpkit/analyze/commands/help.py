"""``help``: the command list, or one command's description and usage."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from kdumpkit.analyze.commands.base import COMMANDS, Command, CommandError, Result, register

if TYPE_CHECKING:
    from drgn import Program

COLUMNS = 5
COLUMN_WIDTH = 15


def command_list() -> list[str]:
    """Every command name and alias, plus the session's own words."""
    return sorted(set(COMMANDS) | {"exit", "q"})


def columns_text(names: list[str]) -> str:
    """Names in crash's help layout: filled down the columns."""
    rows = -(-len(names) // COLUMNS)
    lines = []
    for row in range(rows):
        cells = [names[col * rows + row] for col in range(COLUMNS) if col * rows + row < len(names)]
        lines.append("".join(f"{cell:<{COLUMN_WIDTH}}" for cell in cells).rstrip())
    return "\n".join(lines) + "\n"


def drgn_usage(prog: Program, name: str) -> str:
    """The usage drgn's crash layer prints for one of its commands."""
    from kdumpkit.analyze.commands.drgn_crash import run_drgn_crash_command

    try:
        # an option no command has: drgn answers with the usage and runs nothing
        run_drgn_crash_command(prog, [name, "--kdumpkit-usage"])
    except CommandError as exc:
        usage = str(exc).partition("usage: ")[2]
        if usage:
            return "  " + usage.strip() + "\n"
    return "  (arguments as crash 9.0.2 takes them)\n"


@register
class Help(Command):
    """crash's ``help``."""

    name = "help"
    help = "the command list, or a command's usage"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("command", nargs="?", help="the command to describe")

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        if args.command is None:
            from kdumpkit import __version__

            names = command_list()
            text = (
                "\n"
                + columns_text(names)
                + f"\nkdumpkit version: {__version__}   (crash 9.0.2 command formats)\n"
                + 'For help on any command above, enter "help <command>".\n'
            )
            return Result(text, [{"name": n} for n in names])
        command_cls = COMMANDS.get(args.command)
        if command_cls is None:
            raise CommandError(f"no help for: {args.command}")
        command = command_cls()
        parser = command.parser()
        text = f"NAME\n  {command.name} - {command.help}\n\n"
        if type(parser) is argparse.ArgumentParser:
            text += "SYNOPSIS\n" + parser.format_help().replace("usage: ", "  ", 1)
        else:
            text += "SYNOPSIS\n" + drgn_usage(prog, command.name)
        return Result(text, [{"name": command.name, "help": command.help}])
