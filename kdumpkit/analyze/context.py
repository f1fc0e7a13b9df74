"""What an analysis program carries besides drgn's own state: the dump it reads, the
symbols and types kdumpkit loaded for it, the paths the user gave, and the session's
chosen task.  :mod:`kdumpkit.analyze.program` puts them into ``prog.cache``; everything
else reads them through this module's functions, never by probing ``prog.cache``.

The stack unwinder is :mod:`kdumpkit.analyze.stack`'s (``stack_trace()``,
``text_symbol()``...); it keeps itself under :data:`UNWINDER_KEY`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from drgn import Object, Program

    from kdumpkit.debuginfo.loader import DebugInfo
    from kdumpkit.debuginfo.symbols import KernelSymbols
    from kdumpkit.dump.base import Dump
    from kdumpkit.dump.vmcoreinfo import VmcoreInfo

#: prog.cache keys (set by kdumpkit.analyze.program and kdumpkit.debuginfo.loader)
DUMP_KEY = "kdumpkit.dump"
DEBUGINFO_KEY = "kdumpkit.debuginfo"
PATH_KEY = "kdumpkit.path"
VMLINUX_KEY = "kdumpkit.vmlinux"
UNWINDER_KEY = "kdumpkit.unwinder"
#: the task the session's commands act on (crash's "current context")
CONTEXT_TASK_KEY = "kdumpkit.context"
#: gdb's value history counter ($1, $2...) of ``p`` and ``struct``
VALUE_HISTORY_KEY = "kdumpkit.value_history"

T = TypeVar("T")


def program_dump(prog: Program) -> Dump | None:
    """The dump file the program reads (None for the live kernel)."""
    return prog.cache.get(DUMP_KEY)


def program_vmcoreinfo(prog: Program) -> VmcoreInfo | None:
    """The dump's VMCOREINFO (None for the live kernel)."""
    dump = program_dump(prog)
    return dump.vmcoreinfo if dump is not None else None


def program_debuginfo(prog: Program) -> DebugInfo | None:
    """The types and symbols kdumpkit loaded (None when none were)."""
    return prog.cache.get(DEBUGINFO_KEY)


def program_symbols(prog: Program) -> KernelSymbols | None:
    """The kernel's symbol table from kallsyms, System.map or an ELF symtab, if loaded."""
    info = program_debuginfo(prog)
    return info.symbols if info is not None else None


def dump_path(prog: Program) -> str | None:
    """The dump file's name as the user gave it (``/proc/kcore`` live)."""
    path = prog.cache.get(PATH_KEY)
    if path:
        return os.fspath(path)
    dump = program_dump(prog)
    return dump.name if dump is not None else None


def vmlinux_path(prog: Program) -> str | None:
    """The vmlinux given for types, if one was."""
    path = prog.cache.get(VMLINUX_KEY)
    if path:
        return os.fspath(path)
    try:
        return prog.main_module().debug_file_path
    except LookupError:
        return None


def cached(prog: Program, key: str, compute: Callable[[], T]) -> T:
    """``prog.cache[key]``, computed once (None results are cached too)."""
    full_key = f"kdumpkit.{key}"
    if full_key in prog.cache:
        return prog.cache[full_key]  # type: ignore[no-any-return]
    value = compute()
    prog.cache[full_key] = value
    return value


def selected_task(prog: Program) -> Object | None:
    """The task ``set`` chose, by our commands or drgn's (``prog.config``), if any."""
    task = prog.cache.get(CONTEXT_TASK_KEY)
    if task is None:
        task = prog.config.get("crash_context")
    return task


def select_task(prog: Program, task: Object) -> None:
    """Make ``task`` the default task of later commands (crash's ``set PID``), for our
    commands and for drgn's crash-compatible ones alike."""
    prog.cache[CONTEXT_TASK_KEY] = task
    prog.config["crash_context"] = task


def next_value_number(prog: Program) -> int:
    """The next ``$N`` of gdb's value history."""
    number: int = prog.cache.get(VALUE_HISTORY_KEY, 0) + 1
    prog.cache[VALUE_HISTORY_KEY] = number
    return number
