"""Running drgn 0.3.0's crash-compatible commands (``drgn.commands``) with their output
captured into a Result: the base class of the commands we pass through to drgn (a
helper module: it registers no command; :mod:`.passthrough` does)."""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from kdumpkit.analyze.commands.base import Command, CommandError, Result

if TYPE_CHECKING:
    from drgn import Program


class PassThroughParser(argparse.ArgumentParser):
    """Keeps the words as they are: drgn's own parser reads them."""

    def parse_args(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        namespace: Any = None,
    ) -> argparse.Namespace:
        return argparse.Namespace(argv=list(args or []))


def run_drgn_crash_command(prog: Program, words: Sequence[str]) -> str:
    """Run ``crash WORDS`` through drgn.commands and return what it printed."""
    # drgn.commands._crash registers drgn's "crash" command: kdumpkit.analyze.program
    # skips drgn's plugin loading, which would otherwise have imported it.
    import drgn.commands
    import drgn.commands._crash

    line = "crash " + " ".join(shlex.quote(word) for word in words)
    out = io.StringIO()
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            drgn.commands.run_command(prog, line, globals={})
    except drgn.commands.CommandError as exc:
        message = str(exc).split(": error: ", 1)[-1].removeprefix(f"{words[0]}: ")
        usage = err.getvalue().strip() or out.getvalue().strip()
        raise CommandError(message + (f"\n{usage}" if usage.startswith("usage") else "")) from None
    return out.getvalue()


class DrgnCrashCommand(Command):
    """A command run by drgn's crash compatibility layer, arguments untouched."""

    #: the command's name in drgn.commands, when it differs from ours
    drgn_name: ClassVar[str | None] = None

    def parser(self) -> argparse.ArgumentParser:
        return PassThroughParser(prog=self.name, description=self.help, add_help=False)

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        text = run_drgn_crash_command(prog, [self.drgn_name or self.name, *args.argv])
        return Result(text, [{"text": text}])
