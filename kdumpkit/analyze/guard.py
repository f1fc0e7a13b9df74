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

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
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
    limit: int = MAX_LIST_ENTRIES,
) -> Iterator[drgn.Object]:
    """``list_for_each_entry`` that cannot hang: bounded, cycle-checked, and ending
    with a note (not an exception) at a pointer to nowhere."""
    from drgn.helpers.linux.list import list_for_each_entry

    name = what or f"list of {type_name} at {head.address_ or 0:#x}"
    return bounded(
        list_for_each_entry(type_name, head.address_of_(), member),
        name,
        prog,
        limit,
        key=lambda entry: entry.value_(),
    )


def tasks(prog: drgn.Program, limit: int = MAX_LIST_ENTRIES) -> Iterator[drgn.Object]:
    """Every process (thread-group leader) on ``init_task.tasks``, bounded and
    cycle-checked: a task list that loops, or points into a page not in the dump, ends
    with a note.  (drgn's ``for_each_task`` walks the PID IDR instead.)"""
    return list_entries(
        prog, prog["init_task"].tasks, "struct task_struct", "tasks", "task list", limit
    )


def readable(prog: drgn.Program, address: int, size: int) -> bool:
    """Whether ``size`` bytes at kernel virtual ``address`` can be read from the dump."""
    try:
        prog.read(address, max(size, 1))
    except (drgn.FaultError, ValueError, OverflowError):
        return False
    return True
