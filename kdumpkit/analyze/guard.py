"""Damaged dumps: bounded walks of kernel lists and partial answers that name the damage.

A damaged dump (a capture killed half-way, pages a filter dropped, a disk error) still
holds most of its answer.  The analysis keeps going past a damaged part and says what
it skipped, once per part:

* :func:`note_damage` records a :class:`Damage` (what is damaged, what was done
  instead) in ``prog.cache``; :func:`damage_notes` gives them back, and the CLI prints
  each as one ``warning:`` line;
* :func:`is_dump_damage` tells an error caused by the dump's content (a page not in the
  dump, a pointer to nowhere, a bad VMCOREINFO value, corrupt BTF/ORC/kallsyms) from a
  bug in kdumpkit;
* :func:`partial` runs one part of an answer and turns such an error into a note and a
  default;
* :func:`bounded` and :func:`list_entries` walk kernel lists with a cap on their length
  and a check for cycles, so a ``next`` pointer that loops ends the walk with a note
  instead of hanging.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TypeVar

import drgn

from kdumpkit.errors import KdumpkitError

T = TypeVar("T")

#: prog.cache key of the list of Damage notes.
CACHE_KEY = "kdumpkit.damage"
#: No kernel list the analysis walks is longer than this (pid_max is at most 4M).
MAX_LIST_ENTRIES = 1 << 22
#: Notes kept per program (a dump damaged everywhere must not grow them without bound).
MAX_NOTES = 1000


@dataclass(frozen=True)
class Damage:
    """One damaged part of a dump: ``part`` names it, ``detail`` says what was done."""

    part: str
    detail: str

    def __str__(self) -> str:
        return f"{self.part}: {self.detail}"


def damage_notes(prog: drgn.Program) -> list[Damage]:
    """The damage noted on ``prog`` so far, in the order it was found."""
    notes = prog.cache.get(CACHE_KEY)
    if notes is None:
        notes = prog.cache[CACHE_KEY] = []
    return notes  # type: ignore[no-any-return]


def note_damage(prog: drgn.Program, part: str, detail: str) -> Damage:
    """Record that ``part`` of the dump is damaged (once per part and detail)."""
    damage = Damage(part, detail)
    notes = damage_notes(prog)
    if damage not in notes and len(notes) < MAX_NOTES:
        notes.append(damage)
    return damage


#: Exceptions that a damaged dump's content raises from drgn and from kdumpkit's readers.
DUMP_DAMAGE_ERRORS: tuple[type[BaseException], ...] = (
    drgn.FaultError,
    drgn.BadDataError,
    drgn.OutOfBoundsError,
    drgn.ObjectAbsentError,
    KdumpkitError,
    OverflowError,
    UnicodeDecodeError,
    MemoryError,
    RecursionError,
)


def is_dump_damage(exc: BaseException) -> bool:
    """Whether ``exc`` comes from what the dump holds rather than from a bug."""
    return isinstance(exc, DUMP_DAMAGE_ERRORS)


def describe_error(exc: BaseException) -> str:
    """One line for an error caused by the dump's content."""
    if isinstance(exc, drgn.FaultError):
        address = getattr(exc, "address", None)
        message = getattr(exc, "message", None) or str(exc)
        if address is not None and f"{address:x}" not in message:
            return f"{message} at {address:#x}"
        return message
    if isinstance(exc, MemoryError):
        return "out of memory (a size read from the dump is damaged?)"
    if isinstance(exc, RecursionError):
        return "structures nest without end (a pointer loops?)"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def partial(prog: drgn.Program, part: str, compute: Callable[[], T], default: T) -> T:
    """``compute()``, or ``default`` with a note naming ``part`` when the dump's content
    makes it fail (any other error is a bug and propagates)."""
    try:
        return compute()
    except DUMP_DAMAGE_ERRORS as exc:
        note_damage(prog, part, f"skipped ({describe_error(exc)})")
        return default


class ListLoopError(KdumpkitError):
    """A kernel list loops, or is longer than any real one."""


def bounded(
    items: Iterable[T],
    what: str,
    prog: drgn.Program | None = None,
    limit: int = MAX_LIST_ENTRIES,
    key: Callable[[T], int] | None = None,
) -> Iterator[T]:
    """``items`` with at most ``limit`` of them, stopping at the first repeated ``key``
    (an address: a list whose ``next`` pointer loops back into itself).

    With ``prog`` the walk ends with a note and the items seen so far; without, it
    raises :class:`ListLoopError`.  A fault while walking ends the walk the same way.
    """
    seen: set[int] = set()
    count = 0
    iterator = iter(items)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except (drgn.FaultError, drgn.BadDataError, KdumpkitError) as exc:
            problem = f"ends early: {describe_error(exc)}"
            if prog is None:
                raise ListLoopError(f"{what} {problem}") from None
            note_damage(prog, what, problem)
            return
        if key is not None:
            address = key(item)
            if address in seen:
                problem = f"loops back to {address:#x} after {count} entries; stopped there"
                if prog is None:
                    raise ListLoopError(f"{what} {problem}")
                note_damage(prog, what, problem)
                return
            seen.add(address)
        count += 1
        if count > limit:
            problem = f"has more than {limit} entries; stopped there"
            if prog is None:
                raise ListLoopError(f"{what} {problem}")
            note_damage(prog, what, problem)
            return
        yield item


def list_entries(
    prog: drgn.Program,
    head: drgn.Object,
    type_name: str | drgn.Type,
    member: str,
    what: str | None = None,
) -> Iterator[drgn.Object]:
    """``list_for_each_entry`` that cannot hang (:func:`walk_list`); a fault while
    walking also ends the walk with a note instead of an exception."""
    name = what or _list_name(prog, head.address_ or 0)
    entry_type = prog.type(type_name) if isinstance(type_name, str) else type_name
    nodes = bounded(walk_list(head.address_of_(), "next", name), name, prog)
    for node in nodes:
        yield drgn.container_of(node, entry_type, member)


def tasks(prog: drgn.Program) -> Iterator[drgn.Object]:
    """Every process (thread-group leader) on ``init_task.tasks``, bounded and
    cycle-checked: a task list that loops, or points into a page not in the dump, ends
    with a note.  (drgn's ``for_each_task`` walks the PID IDR instead.)"""
    return list_entries(prog, prog["init_task"].tasks, "struct task_struct", "tasks", "task list")


def readable(prog: drgn.Program, address: int, size: int) -> bool:
    """Whether ``size`` bytes at kernel virtual ``address`` can be read from the dump."""
    try:
        prog.read(address, max(size, 1))
    except (drgn.FaultError, ValueError, OverflowError):
        return False
    return True


def walk_list(
    head: drgn.Object, direction: str = "next", what: str | None = None
) -> Iterator[drgn.Object]:
    """The nodes of the list at ``head`` (a ``struct list_head *``) following ``next``
    (or ``prev``), as drgn's ``list_for_each``, but stopping with a note naming the list
    (``what``, or the kernel variable it is) at a node seen before or after
    :data:`MAX_LIST_ENTRIES` nodes, instead of walking a looping list for ever."""
    head = head.read_()
    head_address = head.value_()
    seen: set[int] = set()
    pos = getattr(head, direction).read_()
    while (address := pos.value_()) != head_address:
        if address in seen or len(seen) >= MAX_LIST_ENTRIES:
            problem = (
                f"loops back to {address:#x} after {len(seen)} entries; stopped there"
                if address in seen
                else f"has more than {MAX_LIST_ENTRIES} entries; stopped there"
            )
            note_damage(head.prog_, what or _list_name(head.prog_, head_address), problem)
            return
        seen.add(address)
        yield pos
        pos = getattr(pos, direction).read_()


def _guarded_list_walk(direction: str) -> Callable[[drgn.Object], Iterator[drgn.Object]]:
    def walk(head: drgn.Object) -> Iterator[drgn.Object]:
        return walk_list(head, direction)

    walk.__doc__ = f"list_for_each{'' if direction == 'next' else '_reverse'}, cycle-checked."
    return walk


def _list_name(prog: drgn.Program, address: int) -> str:
    """``list modules`` for the head of a list that is a kernel variable, else the
    list's address (and the symbol it lies in, if any)."""
    try:
        symbol = prog.symbol(address)
    except (LookupError, ValueError, drgn.FaultError):
        return f"list at {address:#x}"
    if symbol.address == address:
        return f"list {symbol.name}"
    return f"list at {address:#x} ({symbol.name}+{address - symbol.address:#x})"


def _guarded_hlist_walk(head: drgn.Object) -> Iterator[drgn.Object]:
    """drgn's ``hlist_for_each``, stopping with a note at a node seen before."""
    seen: set[int] = set()
    pos = head.first.read_()
    while address := pos.value_():
        if address in seen or len(seen) >= MAX_LIST_ENTRIES:
            note_damage(
                head.prog_,
                f"hlist at {head.address_ or 0:#x}",
                f"loops back to {address:#x} after {len(seen)} entries; stopped there",
            )
            return
        seen.add(address)
        yield pos
        pos = pos.next.read_()


LIST_MODULE = "drgn.helpers.linux.list"


def _guard_list_module(lists: ModuleType) -> None:
    if getattr(lists, "_kdumpkit_guarded", False):
        return
    lists.list_for_each = _guarded_list_walk("next")  # type: ignore[attr-defined]
    lists.list_for_each_reverse = _guarded_list_walk("prev")  # type: ignore[attr-defined]
    lists.hlist_for_each = _guarded_hlist_walk  # type: ignore[attr-defined]
    lists._kdumpkit_guarded = True  # type: ignore[attr-defined]


class _ListModuleFinder(importlib.abc.MetaPathFinder):
    """Guards drgn's list module when something first imports it (importing it loads
    every drgn Linux helper, which commands like ``bt`` never need)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != LIST_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_guard(module: ModuleType) -> None:
            exec_module(module)
            _guard_list_module(module)

        loader.exec_module = exec_and_guard  # type: ignore[method-assign]
        return spec


def guard_drgn_lists() -> None:
    """Make drgn's list walks cycle-checked, for every helper built on them.

    drgn's ``list_for_each_entry`` and its kin (``for_each_module``, a task's children
    and threads, the run queues' lists, every command and the user's shell code) walk
    ``next`` pointers until they come back to the head: in a damaged dump, a pointer
    into the middle of the list makes that walk endless.  The walks in
    ``drgn.helpers.linux.list`` are replaced (once per process, when it is first
    imported) by :func:`walk_list`, which stops at the first node seen twice and notes
    the damage on the program.  They yield the same nodes as drgn's on any list that
    does not loop.
    """
    lists = sys.modules.get(LIST_MODULE)
    if lists is not None:
        _guard_list_module(lists)
    elif not any(isinstance(finder, _ListModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _ListModuleFinder())
