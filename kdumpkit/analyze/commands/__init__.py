"""crash-compatible commands.  Each module defines one or more :class:`Command` subclasses
decorated with :func:`register`; :data:`COMMANDS` maps names (and aliases) to them."""

from kdumpkit.analyze.commands.base import COMMANDS, Command, CommandError, Result, register

__all__ = ["COMMANDS", "Command", "CommandError", "Result", "register"]
