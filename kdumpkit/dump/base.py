"""The one physical-memory interface every dump format offers."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kdumpkit.dump.errors import DumpFormatError, PageNotPresentError
from kdumpkit.dump.notes import Note, PrStatus, find_vmcoreinfo_note, prstatus_notes
from kdumpkit.dump.vmcoreinfo import VmcoreInfo


class PageState(enum.IntEnum):
    """Why a page is, or is not, in a dump."""

    PRESENT = 0
    EXCLUDED = 1  # RAM, filtered out when the dump was written
    HOLE = 2  # not RAM, or beyond the dump's pfn range
    LOST = 3  # the dump is incomplete and this page was never written


_STATE_REASON = {
    PageState.EXCLUDED: "excluded",
    PageState.HOLE: "hole",
    PageState.LOST: "lost",
}


@dataclass
class DumpHeader:
    """Facts common to every format, for ``kdumpkit info`` and for writers."""

    format: str
    machine: str = "x86_64"
    little_endian: bool = True
    page_size: int = 4096
    #: Pages are numbered 0..max_pfn-1.
    max_pfn: int = 0
    dump_level: int | None = None
    compression: str | None = None
    incomplete: bool = False
    #: utsname fields where the format records them (kdump-compressed).
    utsname: dict[str, str] = field(default_factory=dict)
    timestamp: int | None = None
    #: Format-specific facts (header fields), JSON-serialisable.
    extra: dict[str, Any] = field(default_factory=dict)


class Dump(ABC):
    """A crash dump opened for reading: physical memory plus notes.

    Subclasses set ``header``, ``notes`` and ``note_data`` and implement
    :meth:`page_state`, :meth:`_read_present_page` and :meth:`present_bitmap`.
    """

    name: str
    header: DumpHeader
    notes: list[Note]
    #: The raw PT_NOTE segment, copied verbatim by writers.
    note_data: bytes

    def _init_notes(self, note_data: bytes, notes: list[Note]) -> None:
        self.note_data = note_data
        self.notes = notes
        vmci = find_vmcoreinfo_note(notes)
        self.vmcoreinfo: VmcoreInfo | None = VmcoreInfo.parse(vmci.desc) if vmci else None
        self.prstatus: list[PrStatus] = prstatus_notes(notes)

    # --- what subclasses provide -------------------------------------------------------

    @abstractmethod
    def page_state(self, pfn: int) -> PageState:
        """Whether page ``pfn`` has data in this dump, and if not, why."""

    @abstractmethod
    def _read_present_page(self, pfn: int) -> bytes:
        """The page's bytes; only called for a page whose state is PRESENT."""

    @abstractmethod
    def present_bitmap(self) -> np.ndarray:
        """A bool array of length ``max_pfn``: True where a page has data."""

    def ram_bitmap(self) -> np.ndarray:
        """A bool array of length ``max_pfn``: True where a page is RAM (present or excluded)."""
        return self.present_bitmap()

    def close(self) -> None:  # noqa: B027 - optional for subclasses
        """Release files and maps."""

    # --- the interface everyone uses --------------------------------------------------

    @property
    def page_size(self) -> int:
        return self.header.page_size

    @property
    def max_pfn(self) -> int:
        return self.header.max_pfn

    @property
    def format(self) -> str:
        return self.header.format

    def is_present(self, pfn: int) -> bool:
        return self.page_state(pfn) == PageState.PRESENT

    def read_page(self, pfn: int, *, zero_missing: bool = False) -> bytes:
        """The bytes of page ``pfn``.

        A page that is not in the dump raises :class:`PageNotPresentError`,
        or reads as zeros with ``zero_missing=True``.
        """
        state = self.page_state(pfn) if 0 <= pfn < self.max_pfn else PageState.HOLE
        if state == PageState.PRESENT:
            return self._read_present_page(pfn)
        if zero_missing:
            return bytes(self.page_size)
        raise PageNotPresentError(pfn, _STATE_REASON[state], pfn * self.page_size)

    def read(self, paddr: int, size: int, *, zero_missing: bool = False) -> bytes:
        """``size`` bytes of physical memory at ``paddr``, across page boundaries."""
        if size < 0 or paddr < 0:
            raise ValueError("negative address or size")
        page_size = self.page_size
        out = bytearray()
        end = paddr + size
        addr = paddr
        while addr < end:
            pfn, off = divmod(addr, page_size)
            chunk = min(page_size - off, end - addr)
            try:
                page = self.read_page(pfn, zero_missing=zero_missing)
            except PageNotPresentError as exc:
                raise PageNotPresentError(pfn, exc.reason, addr) from None
            out += page[off : off + chunk]
            addr += chunk
        return bytes(out)

    def iter_pfns(self) -> Iterator[int]:
        """Every pfn that has data, in increasing order."""
        for pfn in np.flatnonzero(self.present_bitmap()):
            yield int(pfn)

    def iter_pages(self, only: np.ndarray | None = None) -> Iterator[tuple[int, bytes]]:
        """``(pfn, bytes)`` for every page that has data, in pfn order; with ``only``
        (a bool array of length ``max_pfn``), just the pages where it is True."""
        bits = self.present_bitmap()
        if only is not None:
            bits = bits & only[: self.max_pfn]
        for pfn in np.flatnonzero(bits).tolist():
            yield pfn, self._read_present_page(pfn)

    def iter_page_chunks(
        self, only: np.ndarray | None = None, max_pages: int = 256, *, threads: int = 1
    ) -> Iterator[tuple[np.ndarray, bytes]]:
        """Pages with data in pfn order, in groups of up to ``max_pages``:
        ``(pfns, their bytes back to back)``.  Writers use it; formats that store
        pages contiguously (ELF) override it to avoid per-page copies; compressed
        formats may decode in ``threads`` threads."""
        pfns: list[int] = []
        pages: list[bytes] = []
        for pfn, data in self.iter_pages(only):
            pfns.append(pfn)
            pages.append(data)
            if len(pfns) == max_pages:
                yield np.array(pfns, dtype=np.int64), b"".join(pages)
                pfns, pages = [], []
        if pfns:
            yield np.array(pfns, dtype=np.int64), b"".join(pages)

    def present_ranges(self) -> list[tuple[int, int]]:
        """Runs ``[start, end)`` of consecutive pfns that have data."""
        return bitmap_runs(self.present_bitmap())

    def count_present(self) -> int:
        return int(np.count_nonzero(self.present_bitmap()))

    def __enter__(self) -> Dump:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def bitmap_runs(bits: np.ndarray) -> list[tuple[int, int]]:
    """Runs ``[start, end)`` of True values in a bool array."""
    if bits.size == 0:
        return []
    padded = np.concatenate(([False], bits.astype(bool, copy=False), [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(s), int(e)) for s, e in zip(edges[0::2], edges[1::2], strict=True)]


def check_count(what: str, value: int, limit: int) -> int:
    """Refuse a header count that no real dump has, before sizing anything by it."""
    if value < 0 or value > limit:
        raise DumpFormatError(f"{what} is {value}, outside 0..{limit}")
    return value
