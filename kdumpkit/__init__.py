"""kdumpkit: Linux kernel crash dumps end to end — service, capture and analysis."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    import drgn


def open(path: Any, vmlinux: Any = None) -> drgn.Program:
    """Open a dump (any format kdumpkit reads) or the live kernel as a drgn Program."""
    from kdumpkit.analyze.program import open_program

    return open_program(path, vmlinux=vmlinux)
