"""The kernel's taint: ``tainted_mask`` and the letters kernel/panic.c prints for it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import drgn

from kdumpkit.analyze.facts.symbols import read_global_int

if TYPE_CHECKING:
    from drgn import Program

#: The kernel's taint letters by bit (kernel/panic.c taint_flags[]): (set, unset).
#: Used when the kernel's own table cannot be read.
TAINT_FLAGS: tuple[tuple[str, str], ...] = (
    ("P", "G"),
    ("F", " "),
    ("S", " "),
    ("R", " "),
    ("M", " "),
    ("B", " "),
    ("U", " "),
    ("D", " "),
    ("A", " "),
    ("W", " "),
    ("C", " "),
    ("I", " "),
    ("O", " "),
    ("E", " "),
    ("L", " "),
    ("K", " "),
    ("X", " "),
    ("T", " "),
    ("N", " "),
    ("J", " "),
)


@dataclass
class Taint:
    """A taint mask decoded."""

    mask: int
    #: as the kernel prints it (``G        W  O``); "" when untainted
    letters: str
    #: the letters of the set bits
    flags: list[str] = field(default_factory=list)

    @property
    def tainted(self) -> bool:
        return bool(self.mask)

    def to_json(self) -> dict[str, Any]:
        """mask, letters, flags and tainted."""
        return {**asdict(self), "tainted": self.tainted}


def decode_taint(mask: int, flags: Sequence[tuple[str, str]] = TAINT_FLAGS) -> Taint:
    """A taint mask as the kernel prints it (``G        W  O``) and its set letters."""
    letters = "".join(
        set_ if mask & (1 << bit) else unset for bit, (set_, unset) in enumerate(flags)
    )
    return Taint(
        mask=mask,
        letters=letters.rstrip() if mask else "",
        flags=[set_ for bit, (set_, _) in enumerate(flags) if mask & (1 << bit)],
    )


def kernel_taint(prog: Program) -> Taint:
    """tainted_mask decoded with the kernel's own taint_flags[] (else the built-in table)."""
    try:
        mask = prog["tainted_mask"].value_()
    except LookupError:
        mask = read_global_int(prog, "tainted_mask", 8)
    flags: Sequence[tuple[str, str]] = TAINT_FLAGS
    try:
        flags = [
            (chr(entry.c_true.value_()), chr(entry.c_false.value_()))
            for entry in prog["taint_flags"]
        ]
    except (LookupError, TypeError, drgn.FaultError):
        pass
    return decode_taint(mask, flags)
