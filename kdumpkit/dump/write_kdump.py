"""Write kdump-compressed files (header_version 6) exactly as makedumpfile lays them out.

Block 0: disk_dump_header.  Block 1: kdump_sub_header, then the source's notes
verbatim.  Then the 1st bitmap (RAM) and the 2nd bitmap (dumpable), each a
whole number of blocks, then one page_desc per dumpable page, then the data:
the shared zero page first when zero pages are excluded, then every page
compressed on its own.  A ``--split`` file has the same headers and bitmaps,
its own pfn range, and a descriptor table sized for the whole dump of which it
fills the start (docs/formats.md).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from kdumpkit.dump.base import Bitmap, Dump
from kdumpkit.dump.compress import Codec
from kdumpkit.dump.kdump import (
    LAYOUT_LP64,
    PAGE_DESC,
    PAGE_DESC_SIZE,
    STATUS_INCOMPLETE,
    UTSNAME_FIELDS,
)
from kdumpkit.dump.notes import find_vmcoreinfo_note
from kdumpkit.dump.write_pages import Batch
from kdumpkit.dump.write_sink import Sink

HEADER_VERSION = 6
SIGNATURE = b"KDUMP   "
UINT_MAX = 0xFFFFFFFF


@dataclass
class KdumpPlan:
    """Everything about the file that is decided before the first page is written."""

    block_size: int
    max_mapnr: int
    sub_hdr_size: int
    bitmap_blocks: int
    desc_offset: int
    data_offset: int
    #: Descriptors of the whole dump (the table size; a split file fills part of it).
    total_dumpable: int
    start_pfn: int
    end_pfn: int
    split: bool
    status: int
    order: str


#: Bitmap bytes written per pwrite.
BITMAP_CHUNK = 1 << 20


def write_bitmaps(sink: Sink, plan: KdumpPlan, src: Dump, dumpable: Bitmap) -> None:
    """The 1st bitmap (RAM of ``src``, and every dumpable page) and the 2nd
    (dumpable), a chunk at a time: no copy of the whole bitmaps."""
    at = (1 + plan.sub_hdr_size) * plan.block_size
    one = plan.bitmap_blocks // 2 * plan.block_size
    for pos in range(0, len(dumpable.packed), BITMAP_CHUNK):
        piece = dumpable.packed[pos : pos + BITMAP_CHUNK]
        ram = np.packbits(src.ram_window(pos * 8, (pos + len(piece)) * 8), bitorder="little")
        ram.resize(len(piece))
        sink.pwrite(at + pos, (ram | piece).tobytes())
        sink.pwrite(at + one + pos, piece.tobytes())
    # The padding to whole blocks is zeros (the file may not be new).
    pad = one - len(dumpable.packed)
    if pad:
        sink.pwrite(at + len(dumpable.packed), bytes(pad))
        sink.pwrite(at + one + len(dumpable.packed), bytes(pad))


def plan_kdump(
    src: Dump,
    total_dumpable: int,
    *,
    codec: Codec,
    start_pfn: int = 0,
    end_pfn: int | None = None,
    split: bool = False,
) -> KdumpPlan:
    """Offsets and sizes of the file's regions."""
    bs = src.page_size
    sub_size = struct.calcsize(LAYOUT_LP64.sub)
    sub_hdr_size = -(-(sub_size + len(src.note_data)) // bs)
    one_bitmap = max(1, -(-((src.max_pfn + 7) // 8) // bs))
    bitmap_blocks = 2 * one_bitmap
    desc_offset = (1 + sub_hdr_size + bitmap_blocks) * bs
    return KdumpPlan(
        block_size=bs,
        max_mapnr=src.max_pfn,
        sub_hdr_size=sub_hdr_size,
        bitmap_blocks=bitmap_blocks,
        desc_offset=desc_offset,
        data_offset=desc_offset + total_dumpable * PAGE_DESC_SIZE,
        total_dumpable=total_dumpable,
        start_pfn=start_pfn,
        end_pfn=src.max_pfn if end_pfn is None else end_pfn,
        split=split,
        status=codec.flag,
        order="<" if src.header.little_endian else ">",
    )


def encode_main_header(
    plan: KdumpPlan, utsname: dict[str, str], timestamp: int, nr_cpus: int
) -> bytes:
    """disk_dump_header (LP64), padded to one block."""
    uts = b"".join(
        utsname.get(f, "").encode("latin-1", "replace")[:64].ljust(65, b"\0")
        for f in UTSNAME_FIELDS
    )
    raw = struct.pack(
        plan.order + LAYOUT_LP64.header,
        SIGNATURE, HEADER_VERSION, uts, timestamp, 0, plan.status, plan.block_size,
        plan.sub_hdr_size, plan.bitmap_blocks, min(plan.max_mapnr, UINT_MAX),
        0, 0, 0, 0, nr_cpus,
    )  # fmt: skip
    return raw.ljust(plan.block_size, b"\0")


def encode_sub_header(plan: KdumpPlan, src: Dump, phys_base: int, dump_level: int) -> bytes:
    """kdump_sub_header (LP64) followed by the notes, padded to ``sub_hdr_size`` blocks."""
    bs = plan.block_size
    sub_size = struct.calcsize(LAYOUT_LP64.sub)
    offset_note = bs + sub_size
    vmci = find_vmcoreinfo_note(src.notes)
    offset_vmcoreinfo = offset_note + vmci.desc_offset if vmci else 0
    size_vmcoreinfo = len(vmci.desc) if vmci else 0
    start, end = (plan.start_pfn, plan.end_pfn) if plan.split else (0, 0)
    raw = struct.pack(
        plan.order + LAYOUT_LP64.sub,
        phys_base & 0xFFFFFFFFFFFFFFFF, dump_level, 1 if plan.split else 0,
        start, end, offset_vmcoreinfo, size_vmcoreinfo,
        offset_note if src.note_data else 0, len(src.note_data), 0, 0,
        start, end, plan.max_mapnr,
    )  # fmt: skip
    return (raw + src.note_data).ljust(plan.sub_hdr_size * bs, b"\0")


#: Descriptors and data are gathered up to this many bytes before a write.
WRITE_BUFFER = 512 << 10


def write_kdump_pages(
    sink: Sink,
    plan: KdumpPlan,
    batches: Iterator[Batch],
    *,
    zero_page: bool,
    first_desc_index: int = 0,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int, int]:
    """Write descriptors and data; returns (pages, zero pages, end of data).

    ``zero_page``: data starts with the shared zero page.  Zero pages of the
    batches (size 0) point at it; ``makedumpfile --reassemble`` also expects it
    at the start of every split file's data.  Writes are gathered into buffers
    of about :data:`WRITE_BUFFER` bytes."""
    bs = plan.block_size
    dtype = PAGE_DESC if plan.order == "<" else PAGE_DESC.newbyteorder(">")
    data_pos = plan.data_offset
    zero_offset = 0
    if zero_page:
        zero_offset = data_pos
        sink.pwrite(data_pos, bytes(bs))
        data_pos += bs
    index = first_desc_index
    pages = zeros = 0
    out = _Gather(sink)
    for batch in batches:
        sizes, flags = batch.sizes, batch.flags
        assert sizes is not None and flags is not None
        descs = np.zeros(len(sizes), dtype=dtype)
        zero = sizes == 0
        ends = np.cumsum(sizes) + data_pos
        descs["offset"] = np.where(zero, zero_offset, ends - sizes)
        descs["size"] = np.where(zero, bs, sizes)
        descs["flags"] = flags
        zeros += int(np.count_nonzero(zero))
        out.data(data_pos, batch.data)
        out.descs(plan.desc_offset + index * PAGE_DESC_SIZE, descs.tobytes())
        data_pos = int(ends[-1]) if len(ends) else data_pos
        index += len(descs)
        pages += len(descs)
        if progress is not None:
            progress(pages)
    out.flush()
    return pages, zeros, data_pos


def _joined(chunks: list[bytes | memoryview]) -> bytes | memoryview:
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _Gather:
    """Consecutive data and descriptor writes gathered into large pwrites.

    Data is written before the descriptors that point at it: in a dump cut
    short, a page whose descriptor was written always has its data (unwritten
    descriptors read as offset 0)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._data: list[bytes | memoryview] = []
        self._data_at = self._data_len = 0
        self._descs: list[bytes | memoryview] = []
        self._descs_at = self._descs_len = 0

    def data(self, offset: int, chunk: bytes | memoryview) -> None:
        if not self._data:
            self._data_at = offset
        self._data.append(chunk)
        self._data_len += len(chunk)

    def descs(self, offset: int, chunk: bytes) -> None:
        if not self._descs:
            self._descs_at = offset
        self._descs.append(chunk)
        self._descs_len += len(chunk)
        if self._data_len + self._descs_len >= WRITE_BUFFER:
            self.flush()

    def flush(self) -> None:
        if self._data_len:
            self.sink.pwrite(self._data_at, _joined(self._data))
        if self._descs_len:
            self.sink.pwrite(self._descs_at, _joined(self._descs))
        self._data, self._descs = [], []
        self._data_len = self._descs_len = 0


def mark_incomplete(sink: Sink, plan: KdumpPlan, header: bytes) -> None:
    """Rewrite the main header with DUMP_DH_COMPRESSED_INCOMPLETE set (best effort)."""
    status_offset = 424  # disk_dump_header.status on LP64
    status = struct.unpack_from(plan.order + "I", header, status_offset)[0] | STATUS_INCOMPLETE
    fixed = bytearray(header)
    struct.pack_into(plan.order + "I", fixed, status_offset, status)
    try:
        sink.pwrite(0, bytes(fixed))
    except OSError:
        pass  # the device is gone or full; the caller still gets the original error
