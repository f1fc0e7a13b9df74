"""crash-compatible commands.  Each module defines one or more :class:`Command` subclasses
decorated with :func:`register`; :data:`COMMANDS` maps names (and aliases) to them.

Modules are imported when a command needs them: :func:`find_command` imports only the
module named after the command when there is one (``bt`` is in ``bt.py``), every
module otherwise (aliases, drgn's pass-through commands); :func:`load_all_commands`
imports them all (the command list, completion).
"""

from __future__ import annotations

import importlib
import pkgutil

from kdumpkit.analyze.commands.base import COMMANDS, Command, CommandError, Result, register

__all__ = [
    "COMMANDS",
    "Command",
    "CommandError",
    "CommandImportError",
    "Result",
    "find_command",
    "load_all_commands",
    "register",
]

#: modules of this package that define no command (commands may import these, and
#: these import no command module)
HELPER_MODULES = frozenset({"base", "common", "drgn_crash", "gdbvalue", "stacktext"})
#: commands that need every other command registered first (help lists them all)
NEEDS_ALL_COMMANDS = frozenset({"help"})

_module_names: list[str] | None = None
_all_loaded = False


def command_module_names() -> list[str]:
    """The names of the modules that define commands (found once)."""
    global _module_names
    if _module_names is None:
        _module_names = [
            info.name
            for info in pkgutil.iter_modules(__path__)
            if info.name not in HELPER_MODULES and not info.name.startswith("_")
        ]
    return _module_names


class CommandImportError(ImportError):
    """A command module failed to import: a bug, reported rather than hidden (its
    commands would silently vanish)."""


def _import_command_module(name: str) -> None:
    try:
        importlib.import_module(f"{__name__}.{name}")
    except ImportError as exc:
        raise CommandImportError(
            f"command module kdumpkit.analyze.commands.{name} failed to import: {exc}"
        ) from exc


def load_all_commands() -> dict[str, type[Command]]:
    """Import every command module so that each registers itself; return the registry."""
    global _all_loaded
    if not _all_loaded:
        for name in command_module_names():
            _import_command_module(name)
        _all_loaded = True
    return COMMANDS


def find_command(name: str) -> type[Command] | None:
    """The command called ``name`` (or with that alias), importing as little as it can."""
    if not _all_loaded and name not in NEEDS_ALL_COMMANDS and name in command_module_names():
        _import_command_module(name)
        found = COMMANDS.get(name)
        # Only a command defined in its namesake module is sure to win over every other
        # module's registrations (tests/test_commands_crash.py checks that they all are).
        if found is not None and found.__module__ == f"{__name__}.{name}":
            return found
    return load_all_commands().get(name)
