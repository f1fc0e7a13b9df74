"""Output files that appear whole or not at all; the one-line errors and warnings of verbs."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

#: The words that start the line of an error that is kdumpkit's bug, not the input's.
INTERNAL_ERROR = "internal error"


@contextlib.contextmanager
def replaced_on_success(paths: Sequence[str], mode: int | None = None) -> Iterator[list[str]]:
    """A temporary file beside each of ``paths``, renamed onto it when the block succeeds.

    When the block fails (or is interrupted) the temporary files are removed, so a
    reader never finds a half-written file under the name it asked for.  ``mode``
    sets the files' permissions before the rename (mkstemp creates them 0600).
    """
    temps: list[str] = []
    try:
        for path in paths:
            folder = os.path.dirname(os.path.abspath(path))
            fd, tmp = tempfile.mkstemp(
                dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
            )
            os.close(fd)
            temps.append(tmp)
        yield temps
        for tmp, path in zip(temps, paths, strict=True):
            if mode is not None:
                os.chmod(tmp, mode)
            os.replace(tmp, path)
    except BaseException:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


def internal_error_line(exc: BaseException) -> str:
    """The one line printed for an exception no layer turned into a KdumpkitError."""
    where = ""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        where = f" at {os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"
    message = (str(exc).strip().splitlines() or [""])[0]
    return (
        f"{INTERNAL_ERROR}: {type(exc).__name__}: {message}{where} "
        "(KDUMPKIT_DEBUG=1 shows the traceback)"
    )


def warn_damage(verb: str, damage: Iterable[Any], out: IO[str] | None = None) -> int:
    """One ``kdumpkit VERB: warning: PART: DETAIL`` line per damaged part; how many."""
    out = out or sys.stderr
    count = 0
    for item in damage:
        out.write(f"kdumpkit {verb}: warning: {item}\n")
        count += 1
    out.flush()
    return count


def add_zero_excluded(parser: Any) -> None:
    """The analysis verbs' ``--zero-excluded`` switch."""
    parser.add_argument(
        "--zero-excluded",
        action="store_true",
        help="read pages excluded from the dump (or never written to it) as zeros, as "
        "crash's --zero_excluded; a warning says so and counts the pages read",
    )


class DamageWarnings:
    """Prints, as ``warning:`` lines on stderr, each damaged part noted on a program (or a
    dump) once, and with ``--zero-excluded`` how many pages were read as zeros."""

    def __init__(self, verb: str, prog: Any = None, dump: Any = None) -> None:
        self.verb = verb
        self.prog = prog
        self.dump = (
            dump if dump is not None else (prog.cache.get("kdumpkit.dump") if prog else None)
        )
        self.printed = 0
        if self.dump is not None and getattr(self.dump, "zero_excluded", False):
            warn_damage(
                verb,
                [
                    "--zero-excluded: pages excluded from the dump read as zeros; "
                    "values read from them are not the kernel's"
                ],
            )

    def flush(self) -> None:
        """Print the damage noted since the last call."""
        if self.prog is None:
            return
        from kdumpkit.analyze.guard import damage_notes

        notes = damage_notes(self.prog)
        warn_damage(self.verb, notes[self.printed :])
        self.printed = len(notes)

    def finish(self) -> None:
        """Print what is left, and the pages read as zeros."""
        self.flush()
        if self.dump is None or not getattr(self.dump, "zero_excluded", False):
            return
        pfns = sorted(self.dump.zero_filled)
        if pfns:
            shown = ", ".join(f"{pfn:#x}" for pfn in pfns[:8]) + (", ..." if len(pfns) > 8 else "")
            line = f"--zero-excluded: {len(pfns)} excluded pages were read as zeros (pfn {shown})"
        else:
            line = "--zero-excluded: no excluded page was read"
        warn_damage(self.verb, [line])
