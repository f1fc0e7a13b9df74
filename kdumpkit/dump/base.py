"""The one physical-memory interface every dump format offers."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
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
    #: crash's ``--zero_excluded``: a page that is RAM but not in the dump (excluded by
    #: the dump level, or never written to an incomplete dump) reads as zeros instead of
    #: raising PageNotPresentError; each such pfn read is added to ``zero_filled``.
    zero_excluded: bool = False
    _zero_filled: set[int] | None = None

    @property
    def zero_filled(self) -> set[int]:
        """The pfns read as zeros because of :attr:`zero_excluded`."""
        if self._zero_filled is None:
            self._zero_filled = set()
        return self._zero_filled

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

    def present_bits(self) -> Bitmap:
        """:meth:`present_bitmap` packed, a bit per pfn: a new bitmap, the caller's
        to change (formats that know their ranges build it without the
        byte-per-pfn array)."""
        return Bitmap.from_bool(self.present_bitmap())

    def ram_bits(self) -> Bitmap:
        """:meth:`ram_bitmap` packed, a bit per pfn: a new bitmap, the caller's."""
        return Bitmap.from_bool(self.ram_bitmap())

    def present_window(self, start: int, end: int) -> np.ndarray:
        """:meth:`present_bitmap` ``[start, end)`` (formats that know their ranges
        make just the window; here the whole bitmap is made once and kept)."""
        return self._whole_bitmap("present")[start:end]

    def ram_window(self, start: int, end: int) -> np.ndarray:
        """:meth:`ram_bitmap` ``[start, end)`` (the whole bitmap made once and kept)."""
        return self._whole_bitmap("ram")[start:end]

    def _whole_bitmap(self, which: str) -> np.ndarray:
        # Some formats make their bitmaps anew at every call: windows use one copy.
        key = f"_window_{which}"
        bits = self.__dict__.get(key)
        if bits is None:
            bits = self.present_bitmap() if which == "present" else self.ram_bitmap()
            self.__dict__[key] = bits
        return bits

    def count_windows(self, *, ram: bool) -> int:
        """Pages present (or RAM), counted a window at a time."""
        window = self.ram_window if ram else self.present_window
        return sum(
            int(np.count_nonzero(window(lo, lo + BITMAP_WINDOW)))
            for lo in range(0, self.max_pfn, BITMAP_WINDOW)
        )

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
        or reads as zeros with ``zero_missing=True`` (or, when it is RAM, with
        :attr:`zero_excluded` set).
        """
        state = self.page_state(pfn) if 0 <= pfn < self.max_pfn else PageState.HOLE
        if state == PageState.PRESENT:
            return self._read_present_page(pfn)
        if zero_missing:
            return bytes(self.page_size)
        if self.zero_excluded and state in (PageState.EXCLUDED, PageState.LOST):
            self.zero_filled.add(pfn)
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

    def read_into(self, paddr: int, buf: memoryview, *, zero_missing: bool = False) -> None:
        """:meth:`read` of ``len(buf)`` bytes into ``buf`` (readers that can, copy once)."""
        buf[:] = self.read(paddr, len(buf), zero_missing=zero_missing)

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
    ) -> Iterator[tuple[np.ndarray, bytes | memoryview]]:
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

    def iter_kept_chunks(
        self, keep: Bitmap, max_pages: int = 256, *, threads: int = 1
    ) -> Iterator[tuple[np.ndarray, bytes | memoryview]]:
        """:meth:`iter_page_chunks` of the pages set in a packed ``keep``.  Formats
        that read runs of pfns directly (ELF) go a window at a time; the others
        unpack ``keep`` whole."""
        return self.iter_page_chunks(keep.to_bool(), max_pages, threads=threads)

    def present_ranges(self) -> list[tuple[int, int]]:
        """Runs ``[start, end)`` of consecutive pfns that have data."""
        return bitmap_runs(self.present_bitmap())

    def count_present(self) -> int:
        return int(np.count_nonzero(self.present_bitmap()))

    def __enter__(self) -> Dump:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: pfns a :class:`Bitmap` user unpacks at a time (1 MiB of bools, 4 GiB of 4 KiB pages).
BITMAP_WINDOW = 1 << 20
#: Set bits of every byte value.
POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _zeros(nbytes: int) -> np.ndarray:
    """A zeroed uint8 array; large ones in an anonymous map of their own, so that
    pages never written take no memory and freeing gives it all back (a large
    heap block freed stays in the heap once glibc has raised its mmap threshold)."""
    if nbytes < 1 << 20:
        return np.zeros(nbytes, dtype=np.uint8)
    import mmap

    return np.frombuffer(mmap.mmap(-1, nbytes), dtype=np.uint8)


def _popcount(packed: np.ndarray) -> int:
    """Set bits of a uint8 array, a word at a time, 1 MiB at a time (temporaries
    as large as the bitmap would stay in the heap once freed)."""
    whole = len(packed) & ~7
    total = int(POPCOUNT[packed[whole:]].sum(dtype=np.int64))
    for i in range(0, whole, 1 << 20):
        chunk = packed[i : min(whole, i + (1 << 20))]
        if hasattr(np, "bitwise_count"):  # numpy 2.0+
            total += int(np.bitwise_count(chunk.view(np.uint64)).sum(dtype=np.int64))
        else:
            total += int(POPCOUNT[chunk].sum(dtype=np.int64))
    return total


class Bitmap:
    """A bit per pfn, packed: bit N in byte N >> 3, least significant bit first
    (the kdump bitmap layout).  1 TiB of 4 KiB pages takes 32 MiB, not the
    256 MiB of a bool array; users unpack a window of it at a time."""

    def __init__(self, size: int, packed: np.ndarray | None = None) -> None:
        self.size = size
        nbytes = (size + 7) // 8
        self.packed = _zeros(nbytes) if packed is None else packed
        if self.packed.shape != (nbytes,) or self.packed.dtype != np.uint8:
            raise ValueError(f"a bitmap of {size} bits takes {nbytes} bytes")

    @classmethod
    def from_bool(cls, bits: np.ndarray) -> Bitmap:
        """Pack a bool array."""
        return cls(len(bits), np.packbits(np.asarray(bits, dtype=bool), bitorder="little"))

    @classmethod
    def from_runs(cls, size: int, runs: list[tuple[int, int]]) -> Bitmap:
        """Bits set over every ``[start, end)`` of ``runs``."""
        bitmap = cls(size)
        for start, end in runs:
            bitmap.fill(start, min(end, size), True)
        return bitmap

    def copy(self) -> Bitmap:
        packed = _zeros(len(self.packed))
        packed[:] = self.packed
        return Bitmap(self.size, packed)

    def window(self, start: int, end: int) -> np.ndarray:
        """Bits ``[start, end)`` as a bool array."""
        end = min(end, self.size)
        if end <= start:
            return np.zeros(0, dtype=bool)
        first, last = start >> 3, (end + 7) >> 3
        bits = np.unpackbits(self.packed[first:last], bitorder="little").view(bool)
        return bits[start - (first << 3) : end - (first << 3)]

    def set_window(self, start: int, bits: np.ndarray) -> None:
        """Overwrite bits ``[start, start + len(bits))``; ``start`` a multiple of 8."""
        if start & 7:
            raise ValueError("a bitmap window starts at a multiple of 8")
        end = min(start + len(bits), self.size)
        bits = bits[: end - start]
        first, whole = start >> 3, (end - start) >> 3
        self.packed[first : first + whole] = np.packbits(bits[: whole * 8], bitorder="little")
        rest = (end - start) & 7
        if rest:  # a last partial byte keeps its other bits
            lo = start + whole * 8
            merged = np.zeros(8, dtype=bool)
            old = self.window(lo, lo + 8)
            merged[: len(old)] = old
            merged[:rest] = bits[whole * 8 :]
            self.packed[first + whole] = np.packbits(merged, bitorder="little")[0]

    def fill(self, start: int, end: int, value: bool) -> None:
        """Set (or clear) bits ``[start, end)``."""
        end = min(end, self.size)
        if end <= start:
            return
        head_end = min(end, (start + 7) & ~7)
        tail_start = max(head_end, end & ~7)
        for pfn in (*range(start, head_end), *range(tail_start, end)):
            if value:
                self.packed[pfn >> 3] |= np.uint8(1 << (pfn & 7))
            else:
                self.packed[pfn >> 3] &= np.uint8(~(1 << (pfn & 7)) & 0xFF)
        if tail_start > head_end:
            self.packed[head_end >> 3 : tail_start >> 3] = 0xFF if value else 0

    def count(self, start: int = 0, end: int | None = None) -> int:
        """Set bits in ``[start, end)`` (the whole bitmap by default)."""
        end = self.size if end is None else min(end, self.size)
        if start == 0 and end == self.size:
            return _popcount(self.packed)
        total = 0
        for lo in range(start, end, BITMAP_WINDOW):
            total += int(np.count_nonzero(self.window(lo, min(end, lo + BITMAP_WINDOW))))
        return total

    def to_bool(self) -> np.ndarray:
        """The whole bitmap as a bool array (a byte per bit: small bitmaps only)."""
        return self.window(0, self.size)

    def clear_bits(self, pfns: np.ndarray) -> None:
        """Clear the bits of ``pfns`` (an integer array)."""
        pfns = np.asarray(pfns, dtype=np.int64)
        masks = (~(np.left_shift(1, pfns & 7))).astype(np.uint8)
        np.bitwise_and.at(self.packed, pfns >> 3, masks)

    def runs(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int]]:
        """Runs ``[start, end)`` of set bits, found a window at a time (a run that
        crosses a window boundary comes in pieces)."""
        end = self.size if end is None else min(end, self.size)
        for lo in range(start, end, BITMAP_WINDOW):
            hi = min(end, lo + BITMAP_WINDOW)
            for a, b in bitmap_runs(self.window(lo, hi)):
                yield lo + a, lo + b


def merged_runs(runs: Iterable[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Runs in increasing order with the ones that touch joined (windowed runs
    come in pieces at window boundaries)."""
    current: tuple[int, int] | None = None
    for start, end in runs:
        if current is not None and start == current[1]:
            current = (current[0], end)
            continue
        if current is not None:
            yield current
        current = (start, end)
    if current is not None:
        yield current


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
