"""Dump files, with no kernel knowledge: readers, writers, notes, one physical-memory interface."""

from kdumpkit.dump.base import Dump, DumpHeader, PageState
from kdumpkit.dump.errors import DumpError, DumpFormatError, PageNotPresentError
from kdumpkit.dump.open import open_dump

__all__ = [
    "Dump",
    "DumpError",
    "DumpFormatError",
    "DumpHeader",
    "PageNotPresentError",
    "PageState",
    "open_dump",
]
