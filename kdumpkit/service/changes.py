"""File changes and commands that ``kdumpkit setup`` shows (dry run) or makes (--apply)."""

from __future__ import annotations

import difflib
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from kdumpkit.service.errors import ServiceError
from kdumpkit.service.host import Host

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


@dataclass(frozen=True)
class FileChange:
    """A file to write: its path on the machine, current text (None: absent), new text
    (None: remove the file)."""

    path: str
    old: str | None
    new: str | None
    mode: int = 0o644

    @property
    def changed(self) -> bool:
        """Whether writing would change anything."""
        return self.old != self.new

    def diff(self) -> str:
        """A unified diff from the current to the new text."""
        return "".join(
            difflib.unified_diff(
                (self.old or "").splitlines(keepends=True),
                (self.new or "").splitlines(keepends=True),
                fromfile=self.path if self.old is not None else "/dev/null",
                tofile=self.path if self.new is not None else "/dev/null",
            )
        )


@dataclass
class Changes:
    """Everything one ``setup`` would do, in order: the ``before`` commands (which need the
    files as they are, e.g. ``systemctl disable`` of a unit about to be removed), the files,
    then the commands."""

    files: list[FileChange] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    before: list[list[str]] = field(default_factory=list)

    def add(self, other: Changes) -> None:
        """Append ``other``'s files, commands and notes to these."""
        self.files += other.files
        self.commands += other.commands
        self.notes += other.notes
        self.before += other.before


def file_change(host: Host, path: str, new: str | None) -> FileChange:
    """The change that makes *path* on the machine hold *new* (None: not exist)."""
    return FileChange(path, host.read_text(path) if host.path(path).is_file() else None, new)


def _run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, check=False)


def missing_commands(changes: Changes) -> list[str]:
    """The commands *changes* would run that are not on PATH."""
    return [
        command[0]
        for command in [*changes.before, *changes.commands]
        if shutil.which(command[0]) is None
    ]


def apply_changes(
    host: Host, changes: Changes, log: Callable[[str], None] = print, runner: Runner = _run
) -> None:
    """Write the files (atomically), then run the commands.

    Every command must be on PATH before anything is written.  If a command fails,
    the files written are put back as they were and ServiceError names the command.
    """
    missing = missing_commands(changes)
    if missing:
        raise ServiceError(f"not found on PATH: {', '.join(missing)}; nothing was changed")
    written: list[FileChange] = []
    try:
        for command in changes.before:
            _run_checked(command, log, runner)
        for change in changes.files:
            if change.changed:
                if change.new is None:
                    host.path(change.path).unlink(missing_ok=True)
                    log(f"removed {change.path}")
                else:
                    _write(host, change.path, change.new, change.mode)
                    log(f"wrote {change.path}")
                written.append(change)
        for command in changes.commands:
            _run_checked(command, log, runner)
    except (ServiceError, OSError):
        for change in reversed(written):
            _restore(host, change)
            log(f"restored {change.path}")
        raise


def _run_checked(command: Sequence[str], log: Callable[[str], None], runner: Runner) -> None:
    log(f"running: {shlex.join(command)}")
    result = runner(command)
    if result.returncode != 0:
        output = " ".join((result.stderr or result.stdout or "").split())[:300]
        raise ServiceError(
            f"{shlex.join(command)} failed (exit {result.returncode})"
            + (f": {output}" if output else "")
        )


def _write(host: Host, path: str, text: str, mode: int) -> None:
    target = host.path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.kdumpkit-tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, target)


def _restore(host: Host, change: FileChange) -> None:
    try:
        if change.old is None:
            host.path(change.path).unlink(missing_ok=True)
        else:
            _write(host, change.path, change.old, change.mode)
    except OSError:
        pass
