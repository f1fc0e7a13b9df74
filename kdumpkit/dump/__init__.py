"""Dump files, with no kernel knowledge: readers, writers, notes, one physical-memory interface.

The names below are imported on first use, so that importing ``kdumpkit.dump.errors``
(every verb does) does not import numpy: in a capture kernel or an emulated guest that
costs seconds.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kdumpkit.dump.base import Dump, DumpHeader, PageState
    from kdumpkit.dump.errors import DumpError, DumpFormatError, PageNotPresentError
    from kdumpkit.dump.open import open_dump

_WHERE = {
    "Dump": "kdumpkit.dump.base",
    "DumpHeader": "kdumpkit.dump.base",
    "PageState": "kdumpkit.dump.base",
    "DumpError": "kdumpkit.dump.errors",
    "DumpFormatError": "kdumpkit.dump.errors",
    "PageNotPresentError": "kdumpkit.dump.errors",
    "open_dump": "kdumpkit.dump.open",
}

__all__ = [
    "Dump",
    "DumpError",
    "DumpFormatError",
    "DumpHeader",
    "PageNotPresentError",
    "PageState",
    "open_dump",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'kdumpkit.dump' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
