"""Finding the kallsyms tables in kernel memory by their shape (kernels before 6.0).

Linux 6.0 put the tables' addresses in VMCOREINFO; older kernels (RHEL 8/9, Ubuntu
20.04/22.04, Debian 11) have the same tables in the image's read-only data but say
nowhere where.  scripts/kallsyms writes them as (one ``ALGN``, 8 bytes on 64-bit,
between each)::

    before 6.4                              6.4 on (404bad70fcf7 "scripts/kallsyms:
                                                    change the output order")
    kallsyms_offsets / kallsyms_addresses   kallsyms_num_syms
    kallsyms_relative_base                  kallsyms_names
    kallsyms_num_syms                       kallsyms_markers
    kallsyms_names                          kallsyms_token_table
    kallsyms_markers                        kallsyms_token_index
    kallsyms_seqs_of_names (6.2, 6.3)       kallsyms_offsets / kallsyms_addresses
    kallsyms_token_table                    kallsyms_relative_base (gone in 7.0)
    kallsyms_token_index                    kallsyms_seqs_of_names

The token table is the anchor (marin-m/vmlinux-to-elf's method): scripts/kallsyms
keeps every character that symbol names use as its own one-character token at the
index of its code, so "0\\0" "1\\0" ... "9\\0" appear in a row, at indexes 48..57.
The token index after the table (256 u16 offsets) must list exactly the tokens that
the NULs delimit; it gives the table's start (``index[48]`` bytes before "0"), so
stray bytes before the table cannot shift it (bata24/gef#137).  Below the table
(past 6.2's 3-byte ``seqs_of_names`` entries) the markers, one ``.long`` (a ``PTR``,
u64, in older kernels) per 256 names, start at 0 and grow; ``kallsyms_num_syms`` sits
8 bytes before the names, and walking that many names from there must end at the
markers and pass each marker on the way.

The address table is then one of a few places (before ``num_syms`` or after the
token index) in one of three encodings; this module yields each possibility as a
:class:`KallsymsTables` and :func:`kdumpkit.kernel.kallsyms.find_kallsyms` keeps the
one whose decoded symbols land exactly on VMCOREINFO's.

Only the kernel image is read: backwards from the lowest VMCOREINFO symbol above
``_stext`` (its data: ``swapper_pg_dir``, ``init_uts_ns``...), in chunks, at most
:data:`MAX_SCAN_BYTES`.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from kdumpkit.dump.vmcoreinfo import VmcoreInfo

#: ``read(vaddr, size) -> bytes``: kernel virtual memory; pages it cannot read come
#: back as zeros (see :func:`zero_filling`).
ReadFn = Callable[[int, int], bytes]
#: "0\0" .. "9\0": ten consecutive one-character tokens.
DIGIT_TOKENS = b"".join(bytes([ord("0") + i, 0]) for i in range(10))
TOKEN_COUNT = 256
#: Tokens after "0" (index 48) to the end of the table.
TOKENS_FROM_ZERO = TOKEN_COUNT - ord("0")
#: The kernel image is read at most this far below the first data symbol.
MAX_SCAN_BYTES = 96 << 20
SCAN_CHUNK = 2 << 20
#: Without a data symbol in VMCOREINFO the image is assumed to end this far past _stext.
DEFAULT_IMAGE_BYTES = 64 << 20
#: VMCOREINFO values farther than this from _stext are not in the kernel image.
KERNEL_IMAGE_MAX = 1 << 30
#: Where below the token table the markers (and 6.2's seqs_of_names) may start.
MARKERS_REACH = 2 << 20
#: A marker is the byte offset of every 256th name: each name takes 2..~0x4000 bytes.
MARKER_STEP_MIN = 2 * 256
MARKER_STEP_MAX = 300 * 256
#: The most bytes kallsyms_names may take (several times the largest kernel's).
MAX_NAMES_BYTES = 16 << 20
NAMES_CHUNK = 2 << 20
#: More symbols than any kernel has; with fewer than 257 there is only one marker, too
#: little to recognise them by.
MAX_SYMBOLS = 1 << 22
MIN_SYMBOLS = 257
ALIGN = 8


class KallsymsNotFound(Exception):
    """No table shaped like kallsyms is in the kernel image."""


@dataclass(frozen=True)
class KallsymsTables:
    """Where the kallsyms tables are (kernel virtual addresses), as VMCOREINFO (6.0+)
    would say; ``layout`` names how addresses are stored."""

    num_syms: int
    count: int
    names: int
    markers: int
    token_table: int
    token_index: int
    #: "absolute" (kallsyms_addresses), "base-relative" (kallsyms_offsets +
    #: kallsyms_relative_base) or "place-relative" (Linux 7.0: kallsyms_offsets only).
    layout: str
    offsets: int | None = None
    relative_base: int | None = None
    addresses: int | None = None
    #: Known only where it sits between the markers and the token table (6.2, 6.3).
    seqs_of_names: int | None = None

    def symbols(self) -> dict[str, int]:
        """The tables as VMCOREINFO's ``SYMBOL(name)`` entries."""
        found = {
            "kallsyms_names": self.names,
            "kallsyms_num_syms": self.num_syms,
            "kallsyms_token_table": self.token_table,
            "kallsyms_token_index": self.token_index,
            "kallsyms_offsets": self.offsets,
            "kallsyms_relative_base": self.relative_base,
            "kallsyms_addresses": self.addresses,
        }
        return {name: value for name, value in found.items() if value is not None}

    def vmcoreinfo(self, base: VmcoreInfo) -> VmcoreInfo:
        """``base`` with these tables' ``SYMBOL()`` lines (any it had about kallsyms dropped)."""
        kept = [line for line in base.text.splitlines() if not line.startswith("SYMBOL(kallsyms_")]
        added = [f"SYMBOL({name})={value:x}" for name, value in self.symbols().items()]
        return VmcoreInfo.parse("\n".join(kept + added).encode("latin-1") + b"\n")


def zero_filling(read: Callable[[int, int], bytes], faults: tuple[type[BaseException], ...]):
    """``read`` that gives zeros for the pages it cannot read (raising one of ``faults``)."""
    page = 4096

    def reader(address: int, size: int) -> bytes:
        try:
            return read(address, size)
        except faults:
            pass
        out = bytearray(size)
        at = address
        end = address + size
        while at < end:
            chunk = min(page - (at & (page - 1)), end - at)
            try:
                out[at - address : at - address + chunk] = read(at, chunk)
            except faults:
                pass
            at += chunk
        return bytes(out)

    return reader


class PageCache:
    """A reader that keeps the pages it has read (up to ``limit`` bytes), so that the
    scan and the decoding after it read each page of the image once."""

    PAGE = 4096

    def __init__(self, read: ReadFn, limit: int = 32 << 20) -> None:
        self._read = read
        self._pages: dict[int, bytes] = {}
        self._room = limit // self.PAGE

    def __call__(self, address: int, size: int) -> bytes:
        page = self.PAGE
        first, last = address // page, (address + size - 1) // page
        pages = self._pages
        if all(number in pages for number in range(first, last + 1)):
            data = b"".join(pages[number] for number in range(first, last + 1))
        else:
            data = self._read(first * page, (last + 1 - first) * page)
            if len(pages) < self._room:
                for number in range(first, last + 1):
                    at = (number - first) * page
                    pages[number] = data[at : at + page]
        start = address - first * page
        return data[start : start + size]


def entry_starts(blob: bytes | memoryview, count: int) -> tuple[np.ndarray, int]:
    """Where each of the first ``count`` entries of kallsyms_names starts (its length
    byte) and where the last one ends; the end is past ``len(blob)`` when they overrun."""
    starts = array("q")
    add_start = starts.append
    pos = 0
    # Each entry's place depends on every length before it, so this cannot be numpy;
    # kept minimal (~8 ms for 87k entries): lengths are checked afterwards, in bulk.
    try:
        for _ in range(count):
            length = blob[pos]
            add_start(pos)
            if length & 0x80:  # Linux 6.1 "kallsyms: support big kernel symbols": two bytes
                pos += 2 + ((length & 0x7F) | (blob[pos + 1] << 7))
            else:
                pos += 1 + length
    except IndexError:
        pos = len(blob) + 1  # a length byte past the end
    return np.frombuffer(starts, dtype=np.int64), pos


def _align(value: int, to: int = ALIGN) -> int:
    return (value + to - 1) & -to


def scan_range(vmcoreinfo: VmcoreInfo) -> tuple[int, int]:
    """``(low, high)``: the part of the kernel image the tables may be in.

    From ``_stext`` up to the lowest VMCOREINFO symbol above it that is not a kallsyms
    table (the image's data follows its read-only data), at most
    :data:`MAX_SCAN_BYTES`.
    """
    stext = vmcoreinfo.symbol("_stext")
    if stext is None:
        raise KallsymsNotFound("VMCOREINFO has no SYMBOL(_stext) to find the kernel image by")
    above = [
        value
        for key, value in vmcoreinfo.typed().items()
        if key.startswith("SYMBOL(")
        and not key.startswith("SYMBOL(kallsyms_")
        and isinstance(value, int)
        and stext < value < stext + KERNEL_IMAGE_MAX
    ]
    high = min(above) if above else stext + DEFAULT_IMAGE_BYTES
    return max(stext, high - MAX_SCAN_BYTES), high


def scan_kallsyms(vmcoreinfo: VmcoreInfo, read: ReadFn) -> Iterator[KallsymsTables]:
    """Every placement of the kallsyms tables that their shape allows, nearest the
    image's data first.  ``read`` must give zeros for pages it cannot read."""
    low, high = scan_range(vmcoreinfo)
    top = high
    overlap = len(DIGIT_TOKENS)
    while top > low:
        bottom = max(low, top - SCAN_CHUNK)
        chunk = read(bottom, top + overlap - bottom if top < high else top - bottom)
        hit = chunk.rfind(DIGIT_TOKENS)
        while hit >= 0:
            yield from _tables_at_digits(read, low, bottom + hit)
            hit = chunk.rfind(DIGIT_TOKENS, 0, hit + overlap - 1)
        top = bottom


def _tables_at_digits(read: ReadFn, low: int, zero: int) -> Iterator[KallsymsTables]:
    """The placements whose token table has its "0" token at ``zero``."""
    found = _token_table(read, zero)
    if found is None:
        return
    table, index = found
    for markers, marker_values, seqs, count_range in _markers_below(read, low, table):
        for num_syms, names, count in _names_before(read, low, markers, marker_values, count_range):
            yield from _address_tables(num_syms, names, count, markers, table, index, seqs)


def _token_table(read: ReadFn, zero: int) -> tuple[int, int] | None:
    """``(kallsyms_token_table, kallsyms_token_index)`` around the "0" token at ``zero``."""
    before = ord("0") * 64  # no token is longer than this
    start = zero - before
    buf = read(start, before + 64 * TOKENS_FROM_ZERO + TOKEN_COUNT * 2 + ALIGN)
    pos = before
    for _ in range(TOKENS_FROM_ZERO):
        end = buf.find(b"\0", pos)
        if end < 0:
            return None
        pos = end + 1
    for align in (ALIGN, 4, 2):
        index_at = _align(start + pos, align) - start
        if index_at + TOKEN_COUNT * 2 > len(buf):
            continue
        index = np.frombuffer(buf, dtype="<u2", count=TOKEN_COUNT, offset=index_at)
        table_at = before - int(index[ord("0")])
        if index[0] != 0 or table_at < 0:
            continue
        offsets = [0]
        at = table_at
        for _ in range(TOKEN_COUNT):
            at = buf.find(b"\0", at) + 1
            offsets.append(at - table_at)
        if at == pos and offsets[:TOKEN_COUNT] == index.tolist():
            return start + table_at, start + index_at
    return None


def _marker_runs(words: np.ndarray) -> Iterator[tuple[int, int]]:
    """``(first, past_last)`` word indexes of each run that looks like kallsyms_markers:
    0, then values growing by a plausible amount, at least two of them."""
    steps = np.diff(words.astype(np.int64))
    good = (steps >= MARKER_STEP_MIN) & (steps <= MARKER_STEP_MAX)
    zeros = np.flatnonzero((words[:-1] == 0) & good)
    # Each run ends at the first bad step after its zero.
    bad = np.flatnonzero(~good)
    for first in zeros[::-1].tolist():
        after = np.searchsorted(bad, first)
        last = int(bad[after]) if after < len(bad) else len(steps)
        yield first, last + 1


def _markers_below(
    read: ReadFn, low: int, table: int
) -> Iterator[tuple[int, np.ndarray, int | None, tuple[int, int]]]:
    """``(kallsyms_markers, their values, kallsyms_seqs_of_names or None, (fewest,
    most) symbols)`` for each way the markers can sit below the token table."""
    start = max(low, table - MARKERS_REACH) & -ALIGN
    buf = read(start, table - start)
    for width in ("<u4", "<u8"):
        size = np.dtype(width).itemsize
        words = np.frombuffer(buf, dtype=width, count=len(buf) // size)
        for first, past in _marker_runs(words):
            count = past - first
            markers = start + first * size
            end = _align(start + past * size)
            fewest, most = TOKEN_COUNT * (count - 1) + 1, TOKEN_COUNT * count
            values = words[first:past].astype(np.int64)
            if end == table:
                yield markers, values, None, (fewest, most)
                continue
            # Linux 6.2-6.3: kallsyms_seqs_of_names, 3 bytes a symbol, before the tokens.
            seqs_bytes = table - end
            low_count, high_count = max(fewest, (seqs_bytes - ALIGN + 3) // 3), seqs_bytes // 3
            if low_count <= min(most, high_count) and seqs_bytes > 0:
                yield markers, values, end, (low_count, min(most, high_count))


def _names_before(
    read: ReadFn, low: int, markers: int, values: np.ndarray, count_range: tuple[int, int]
) -> Iterator[tuple[int, int, int]]:
    """``(kallsyms_num_syms, kallsyms_names, count)`` for each place below the markers
    where a count in ``count_range`` is stored just before names that end at the markers
    and that the markers index."""
    fewest, most = count_range
    last_marker = int(values[-1])
    top = markers
    reach = markers - min(MAX_NAMES_BYTES, markers - low)
    # Names take at least 2 bytes each: the count sits at least that far down.
    highest = markers - ALIGN - 2 * fewest
    buf = b""
    while top > reach:
        bottom = max(reach, top - NAMES_CHUNK) & -ALIGN
        buf = read(bottom, top - bottom) + buf
        base = markers - len(buf)
        words = np.frombuffer(buf, dtype="<u4", count=len(buf) // 4)
        # 4-aligned u32 counts; the names follow at once (7.x) or after 4 bytes of
        # padding (an 8-aligned ``.long``, or a ``PTR`` count, before).
        fits = (words >= fewest) & (words <= most)
        for slot in np.flatnonzero(fits)[::-1].tolist():
            num_syms = base + 4 * slot
            if num_syms >= top or num_syms > highest:
                continue
            count = int(words[slot])
            gaps = (4, 8) if slot + 1 < len(words) and words[slot + 1] == 0 else (4,)
            for gap in gaps:
                names = num_syms + gap
                blob = memoryview(buf)[names - base :]
                if last_marker < len(blob) and _names_fit(blob, count, values, markers - names):
                    yield num_syms, names, count
        top = bottom


def _names_fit(blob: memoryview, count: int, markers: np.ndarray, size: int) -> bool:
    """Whether ``count`` names in ``blob`` match the markers and end ``size`` bytes (less
    the alignment) in: the first 256 names must end at the second marker and the names
    after the last marker where the markers start.  (The whole table is decoded, and
    checked against VMCOREINFO, afterwards.)"""
    if len(markers) > 1:
        _, end = entry_starts(blob, TOKEN_COUNT)
        if end != markers[1]:
            return False
    last = int(markers[-1])
    _, end = entry_starts(blob[last:], count - TOKEN_COUNT * (len(markers) - 1))
    return size - ALIGN < last + end <= size


def _address_tables(
    num_syms: int,
    names: int,
    count: int,
    markers: int,
    table: int,
    index: int,
    seqs: int | None,
) -> Iterator[KallsymsTables]:
    """Every place and encoding the address table may have, for tables found at these
    addresses (most likely first)."""
    common: dict[str, Any] = {
        "num_syms": num_syms,
        "count": count,
        "names": names,
        "markers": markers,
        "token_table": table,
        "token_index": index,
        "seqs_of_names": seqs,
    }
    offsets_size = _align(4 * count)
    after_index = _align(index + TOKEN_COUNT * 2)
    if seqs is None:
        # 6.4 on: the addresses after the token index.
        yield KallsymsTables(
            layout="base-relative",
            offsets=after_index,
            relative_base=after_index + offsets_size,
            **common,
        )
        yield KallsymsTables(layout="place-relative", offsets=after_index, **common)
        yield KallsymsTables(layout="absolute", addresses=after_index, **common)
    # Before 6.4: the addresses, then the relative base, then num_syms.
    yield KallsymsTables(
        layout="base-relative",
        offsets=num_syms - 8 - offsets_size,
        relative_base=num_syms - 8,
        **common,
    )
    yield KallsymsTables(layout="absolute", addresses=num_syms - 8 * count, **common)
