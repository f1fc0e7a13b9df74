"""Run crash-style command lines on a program: split off ``| pipe`` and ``> file``,
parse the command's arguments, dispatch, and print errors the way crash prints them."""

from __future__ import annotations

import argparse
import shlex
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, NoReturn

import drgn

from kdumpkit.analyze.commands import find_command, load_all_commands
from kdumpkit.analyze.commands.base import Command, CommandError, Result
from kdumpkit.dump.errors import DumpError
from kdumpkit.errors import KdumpkitError

if TYPE_CHECKING:
    from drgn import Program


class AnalysisOpenError(DumpError):
    """A dump opened as a file but could not be set up for analysis."""


def open_for_analysis(
    path: str, vmlinux: str | None = None, *, zero_excluded: bool = False
) -> Program:
    """``open_program`` with every failure the dump's content causes turned into one
    :class:`DumpError` line naming what is damaged (the damage it could go past is noted
    in ``prog.cache``: :func:`kdumpkit.analyze.guard.damage_notes`)."""
    from kdumpkit.analyze.guard import DUMP_DAMAGE_ERRORS, describe_error
    from kdumpkit.analyze.program import open_program

    try:
        return open_program(path, vmlinux=vmlinux, zero_excluded=zero_excluded)
    except (KdumpkitError, OSError):
        raise
    except (
        *DUMP_DAMAGE_ERRORS,
        drgn.MissingDebugInfoError,
        LookupError,
        ValueError,
        NotImplementedError,
        struct.error,
    ) as exc:
        raise AnalysisOpenError(f"{path}: cannot be analysed: {describe_error(exc)}") from None


def load_commands() -> dict[str, type[Command]]:
    """Import every command module so that each registers itself; return the registry."""
    return load_all_commands()


#: the commands drgn 0.3.0's crash layer implements (drgn/commands/_crash)
DRGN_CRASH_COMMANDS = frozenset(
    "ascii bpf bt btop dev eval files foreach help ipcs irq kmem list log mod mount net p "
    "ps ptob ptov rd runq search set sig struct swap sym sys task timer tree union vm vtop "
    "waitq whatis".split()
)


class UsageError(CommandError):
    """The arguments do not fit the command; the message is its usage."""


def _raise_usage(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    raise UsageError(f"{message}\nUsage: {parser.format_usage().removeprefix('usage: ').strip()}")


@dataclass
class CommandLine:
    """One input line split the way crash splits it."""

    words: list[str]
    pipe: str | None = None
    redirect: str | None = None
    append: bool = False


def split_command_line(line: str) -> CommandLine:
    """Split ``cmd args | shell`` and ``cmd args > file`` (quotes respected)."""
    pipe = None
    redirect = None
    append = False
    quote = None
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
            continue
        if char in "'\"":
            quote = char
        elif char == "|":
            pipe = line[index + 1 :].strip()
            line = line[:index]
            break
        elif char == ">":
            rest = line[index + 1 :]
            append = rest.startswith(">")
            redirect = rest[1:].strip() if append else rest.strip()
            line = line[:index]
            break
    try:
        words = shlex.split(line, comments=False)
    except ValueError as exc:
        raise CommandError(f"invalid command line: {exc}") from None
    return CommandLine(words, pipe, redirect, append)


class Session:
    """A crash-like session on one program: the command registry and the task context."""

    def __init__(
        self,
        prog: Program,
        out: IO[str] | None = None,
        err: IO[str] | None = None,
        pager: list[str] | None = None,
    ):
        self.prog = prog
        self.out = out
        self.err = err
        #: a pager command for output taller than the terminal (crash's "scroll on")
        self.pager = pager

    @property
    def commands(self) -> dict[str, type[Command]]:
        """Every command by name and alias (imports every command module)."""
        return load_all_commands()

    def execute(self, words: list[str]) -> Result:
        """Run one command given as words; raise CommandError on any failure."""
        name, argv = words[0], words[1:]
        command_cls = find_command(name)
        if command_cls is None:
            raise CommandError(f"command not found: {name}")
        command = command_cls()
        parser = command.parser()
        parser.error = lambda message: _raise_usage(parser, message)  # type: ignore[method-assign]
        try:
            args = parser.parse_args(argv)
        except UsageError as exc:
            # Options we do not implement (ps -p, log -a, ...) may be drgn's.
            if name in DRGN_CRASH_COMMANDS and str(exc).startswith("unrecognized arguments"):
                from kdumpkit.analyze.commands.drgn_crash import DrgnCrashCommand

                delegate = type(f"Drgn_{name}", (DrgnCrashCommand,), {"name": name})()
                return self._run_command(delegate, delegate.parser().parse_args(argv))
            raise
        return self._run_command(command, args)

    def _run_command(self, command: Command, args: argparse.Namespace) -> Result:
        try:
            return command.run(self.prog, args)
        except drgn.FaultError as exc:
            from kdumpkit.analyze.commands.common import fault_message

            raise CommandError(fault_message(exc)) from None
        except (LookupError, ValueError, NotImplementedError, DumpError) as exc:
            raise CommandError(str(exc) or type(exc).__name__) from None
        except CommandError:
            raise
        except Exception as exc:  # a command bug must not end the session
            raise CommandError(f"{type(exc).__name__}: {exc}") from None

    def run_to_text(self, line: str) -> str:
        """Run a line and return its output text (errors as crash prints them)."""
        parsed = split_command_line(line)
        if not parsed.words:
            return ""
        try:
            return self.execute(parsed.words).text
        except CommandError as exc:
            return self.error_text(parsed.words[0], exc)

    @staticmethod
    def error_text(name: str, exc: CommandError) -> str:
        """``name: message`` lines, as crash reports a failing command."""
        message = str(exc)
        if message.startswith("command not found"):
            return f"crash: {message}\n"
        lines = message.splitlines() or [""]
        first = f"{name}: {lines[0]}\n"
        return first + "".join(f"{rest}\n" for rest in lines[1:])

    def run(self, line: str) -> int:
        """Run a line, writing to ``out`` (or its pipe / file); 0 on success, 1 on error."""
        out = self.out or sys.stdout
        err = self.err or sys.stderr
        if line.lstrip().startswith("!"):
            # crash's shell escape: "!ls -l"
            out.flush()
            return subprocess.run(line.lstrip()[1:], shell=True, check=False).returncode and 1
        try:
            parsed = split_command_line(line)
        except CommandError as exc:
            err.write(f"crash: {exc}\n")
            return 1
        if not parsed.words:
            return 0
        status = 0
        try:
            text = self.execute(parsed.words).text
        except CommandError as exc:
            text = ""
            err.write(self.error_text(parsed.words[0], exc))
            err.flush()
            status = 1
        if parsed.pipe:
            out.flush()
            proc = subprocess.run(parsed.pipe, shell=True, input=text, text=True, check=False)
            return status or (1 if proc.returncode else 0)
        if parsed.redirect:
            try:
                with open(parsed.redirect, "a" if parsed.append else "w") as file:
                    file.write(text)
            except OSError as exc:
                err.write(f"crash: {parsed.redirect}: {exc.strerror}\n")
                return 1
            return status
        if self.pager and text.count("\n") >= shutil.get_terminal_size().lines - 1:
            out.flush()
            try:
                subprocess.run(self.pager, input=text, text=True, check=False)
                return status
            except OSError:
                pass  # no such pager: print instead
        out.write(text)
        out.flush()
        return status
