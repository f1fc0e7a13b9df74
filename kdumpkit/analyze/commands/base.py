"""The command interface: a command declares its arguments and returns a Result;
rendering (crash-style text, JSON) is separate from the logic."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import drgn


class CommandError(Exception):
    """A command cannot do what was asked; the message is shown as crash shows errors."""


@dataclass
class Result:
    """What a command produced.

    ``rows`` are the structured records (for JSON and for tests); ``text`` is the
    crash-compatible rendering.  A command fills both.
    """

    text: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> Any:
        return self.rows


class Command:
    """One crash command.  Subclasses set ``name``/``help`` and implement ``run``."""

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    help: ClassVar[str] = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare the command's options (crash's spelling: ``bt -a``, ``ps -p``...)."""

    def run(self, prog: drgn.Program, args: argparse.Namespace) -> Result:
        raise NotImplementedError

    def parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog=self.name, description=self.help, add_help=False)
        self.add_arguments(parser)
        return parser


COMMANDS: dict[str, type[Command]] = {}


def register(cls: type[Command]) -> type[Command]:
    """Class decorator: make a command available by its name and aliases."""
    for name in (cls.name, *cls.aliases):
        COMMANDS[name] = cls
    return cls
