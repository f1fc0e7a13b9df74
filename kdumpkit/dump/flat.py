"""makedumpfile's flattened format (``-F``): a random-access file sent as a stream.

A 4096-byte start header (``"makedumpfile"``, type 1, version 1, big-endian)
is followed by records ``i64 offset, i64 size`` (big-endian) + ``size`` bytes
that belong at ``offset`` of the rearranged file, in write order, and an end
marker of sixteen 0xff bytes.  A range written twice keeps its last write.

:class:`FlatSource` indexes the records once and serves ``pread`` from them, so
the kdump and ELF readers work on a flattened file as it is; :func:`reassemble`
replays the records into a regular (sparse) file, as ``makedumpfile -R`` does.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import os
import struct
from typing import BinaryIO

from kdumpkit.dump.base import Dump
from kdumpkit.dump.errors import DumpFormatError
from kdumpkit.dump.formats import FLAT_SIGNATURE, detect_format
from kdumpkit.dump.source import ByteSource

FLAT_HEADER_SIZE = 4096
TYPE_FLAT_HEADER = 1
VERSION_FLAT_HEADER = 1
END_FLAG = -1
RECORD = struct.Struct(">qq")
#: A rearranged file beyond 2^56 bytes (64 PiB) is not a dump of any real machine.
MAX_FILE_OFFSET = 1 << 56
COPY_CHUNK = 8 << 20
MAX_HOLE_SLACK = 64 << 20


def check_flat_header(head: bytes, name: str) -> None:
    """Validate the 4096-byte start header of a flattened stream."""
    if len(head) < 32 or head[:16] != FLAT_SIGNATURE:
        raise DumpFormatError(f"{name}: not a flattened dump (no makedumpfile signature)")
    ftype, version = struct.unpack_from(">qq", head, 16)
    if ftype != TYPE_FLAT_HEADER:
        raise DumpFormatError(f"{name}: flattened header type {ftype} is not 1")
    if version != VERSION_FLAT_HEADER:
        raise DumpFormatError(f"{name}: flattened header version {version} is not 1")


def _check_record(offset: int, size: int, pos: int, name: str) -> None:
    if offset < 0 or size < 0 or offset + size > MAX_FILE_OFFSET:
        raise DumpFormatError(
            f"{name}: flattened record at {pos:#x} has offset {offset:#x} and size {size:#x}"
        )


def _resolve(records: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Turn records (offset, size, data position) in write order into sorted,
    non-overlapping pieces (start, end, data position of start); later writes win."""
    ordered = sorted(range(len(records)), key=lambda i: records[i][0])
    overlap = any(
        records[a][0] + records[a][1] > records[b][0] for a, b in itertools.pairwise(ordered)
    )
    if not overlap:
        return [(records[i][0], records[i][0] + records[i][1], records[i][2]) for i in ordered]
    # Sweep over boundaries keeping the latest active record on top of a heap.
    bounds = sorted({r[0] for r in records} | {r[0] + r[1] for r in records})
    starts = sorted(range(len(records)), key=lambda i: records[i][0])
    heap: list[int] = []  # -seq
    pieces: list[tuple[int, int, int]] = []
    j = 0
    for lo, hi in itertools.pairwise(bounds):
        while j < len(starts) and records[starts[j]][0] <= lo:
            heapq.heappush(heap, -starts[j])
            j += 1
        while heap and records[-heap[0]][0] + records[-heap[0]][1] <= lo:
            heapq.heappop(heap)
        if not heap:
            continue
        seq = -heap[0]
        off, _, pos = records[seq]
        data_pos = pos + (lo - off)
        if pieces and pieces[-1][1] == lo and pieces[-1][2] + (lo - pieces[-1][0]) == data_pos:
            pieces[-1] = (pieces[-1][0], hi, pieces[-1][2])
        else:
            pieces.append((lo, hi, data_pos))
    return pieces


class FlatSource:
    """A flattened dump seen as the file it stands for (holes read as zeros)."""

    def __init__(self, inner: ByteSource) -> None:
        self.inner = inner
        self.name = inner.name
        if inner.size < FLAT_HEADER_SIZE:
            raise DumpFormatError(f"{self.name}: truncated flattened header")
        check_flat_header(inner.pread(0, FLAT_HEADER_SIZE), self.name)
        records: list[tuple[int, int, int]] = []
        pos = FLAT_HEADER_SIZE
        total = inner.size
        ended = False
        while pos + RECORD.size <= total:
            offset, size = RECORD.unpack(inner.pread(pos, RECORD.size))
            if offset == END_FLAG and size == END_FLAG:
                ended = True
                break
            _check_record(offset, size, pos, self.name)
            data_pos = pos + RECORD.size
            if data_pos + size > total:
                raise DumpFormatError(
                    f"{self.name}: truncated: flattened record at {pos:#x} needs {size} bytes, "
                    f"{total - data_pos} left"
                )
            if size:
                records.append((offset, size, data_pos))
            pos = data_pos + size
        if not ended:
            raise DumpFormatError(f"{self.name}: truncated: flattened stream has no end marker")
        self.records = len(records)
        self._pieces = _resolve(records)
        self._starts = [p[0] for p in self._pieces]
        self.size = max((p[1] for p in self._pieces), default=0)
        # Holes read as zeros: bound them so that a hostile record offset cannot make
        # readers allocate the gap.  Real streams (kdump, ELF) have almost no holes.
        holes = self.size - sum(p[1] - p[0] for p in self._pieces)
        if holes > total + MAX_HOLE_SLACK:
            raise DumpFormatError(
                f"{self.name}: flattened records leave {holes:#x} bytes of holes "
                f"in a {total}-byte stream"
            )

    def pread(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` of the rearranged file."""
        if offset < 0 or size < 0 or offset + size > self.size:
            raise DumpFormatError(
                f"{self.name}: truncated: needs bytes {offset:#x}..{offset + size:#x} "
                f"but the flattened file holds {self.size:#x} bytes"
            )
        end = offset + size
        i = max(0, bisect.bisect_right(self._starts, offset) - 1)
        pieces = self._pieces
        # The common case: one record holds the whole range.
        if i < len(pieces) and pieces[i][0] <= offset and end <= pieces[i][1]:
            start, _, data_pos = pieces[i]
            return self.inner.pread(data_pos + offset - start, size)
        out = bytearray(size)
        while i < len(pieces) and pieces[i][0] < end:
            start, stop, data_pos = pieces[i]
            lo, hi = max(start, offset), min(stop, end)
            if hi > lo:
                out[lo - offset : hi - offset] = self.inner.pread(data_pos + lo - start, hi - lo)
            i += 1
        return bytes(out)

    def close(self) -> None:
        self.inner.close()


def open_flat(source: ByteSource) -> Dump:
    """Open the kdump-compressed or ELF dump a flattened stream carries."""
    flat = FlatSource(source)
    kind = detect_format(flat.pread(0, min(16, flat.size)))
    dump: Dump
    if kind == "kdump":
        from kdumpkit.dump.kdump import KdumpDump

        dump = KdumpDump([flat])
    elif kind == "elf":
        from kdumpkit.dump.elf import ElfDump

        dump = ElfDump(flat)
    else:
        raise DumpFormatError(
            f"{source.name}: the flattened stream holds neither a kdump nor an ELF dump"
        )
    dump.header.extra["flattened"] = True
    dump.header.extra["flat_records"] = flat.records
    return dump


def _read_exact(stream: BinaryIO, size: int, name: str, what: str) -> bytes:
    data = stream.read(size)
    if data is None or len(data) != size:
        got = 0 if data is None else len(data)
        raise DumpFormatError(f"{name}: truncated: {what} needs {size} bytes, got {got}")
    return data


def reassemble_stream(stream: BinaryIO, out_fd: int, name: str = "<stdin>") -> int:
    """Replay a flattened stream read sequentially (a pipe works) into ``out_fd``
    with pwrite; returns the size of the rearranged file.  Holes stay sparse."""
    check_flat_header(_read_exact(stream, FLAT_HEADER_SIZE, name, "the flattened header"), name)
    pos = FLAT_HEADER_SIZE
    size_out = 0
    while True:
        head = stream.read(RECORD.size)
        if not head:
            raise DumpFormatError(f"{name}: truncated: flattened stream has no end marker")
        if len(head) != RECORD.size:
            raise DumpFormatError(f"{name}: truncated record header at {pos:#x}")
        offset, size = RECORD.unpack(head)
        if offset == END_FLAG and size == END_FLAG:
            break
        _check_record(offset, size, pos, name)
        pos += RECORD.size
        done = 0
        while done < size:
            chunk = _read_exact(stream, min(COPY_CHUNK, size - done), name, f"record at {pos:#x}")
            _pwrite_all(out_fd, chunk, offset + done)
            done += len(chunk)
        pos += size
        size_out = max(size_out, offset + size)
    os.ftruncate(out_fd, size_out)
    return size_out


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def reassemble(flat_path: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> int:
    """Rearrange a flattened dump file into the kdump-compressed (or ELF) file it
    stands for, like ``makedumpfile -R``; returns the output size."""
    name = os.fspath(flat_path)
    try:
        stream = open(name, "rb", buffering=COPY_CHUNK)
    except OSError as exc:
        raise DumpFormatError(f"{name}: cannot open: {exc.strerror}") from None
    with stream:
        fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            return reassemble_stream(stream, fd, name)
        finally:
            os.close(fd)
