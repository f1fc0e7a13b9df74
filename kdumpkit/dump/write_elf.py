"""Write ELF64 cores of physical memory (what ``makedumpfile -E`` produces).

Layout: ELF header, program headers (PT_NOTE first, then PT_LOADs in address
order), the notes, then page data from the next page boundary, every kept page
once, in pfn order.  Our rule for excluded pages (makedumpfile keeps runs of
fewer than 256 excluded pages as data; we do not, so that an excluded page
never reads back as if it had been saved): each run of kept pages starts a
PT_LOAD whose ``p_memsz`` runs on over the excluded pages that follow it, up to
the next kept page or the end of the RAM range.  Excluded pages at the start
of a RAM range get a PT_LOAD with no file data (``p_offset`` 0).  Zero pages
dropped with ``exclude_zero`` are excluded pages like any other.  More than
65534 program headers use PN_XNUM (the count in section header 0's sh_info).
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from kdumpkit.dump.base import Dump, bitmap_runs
from kdumpkit.dump.elf import DUMP_ELF_INCOMPLETE, EM_NAMES, ET_CORE, PN_XNUM, PT_LOAD, PT_NOTE
from kdumpkit.dump.write_pages import Batch, zero_mask
from kdumpkit.dump.write_sink import Sink

EHDR_SIZE = 64
PHDR_SIZE = 56
SHDR_SIZE = 64
MACHINE_NUMBERS = {name: number for number, name in EM_NAMES.items()}
PF_RWX = 7


@dataclass(frozen=True)
class LoadSegment:
    """A PT_LOAD to write: pfns [start, data_end) have data, [data_end, mem_end) do not."""

    start: int
    data_end: int
    mem_end: int
    offset: int


def plan_segments(
    ram: np.ndarray, kept: np.ndarray, data_offset: int, page_size: int
) -> list[LoadSegment]:
    """PT_LOADs covering every RAM page: kept pages as data, the rest as memsz only."""
    return plan_segments_of_runs(bitmap_runs(ram), bitmap_runs(kept), data_offset, page_size)


def plan_segments_of_runs(
    ram_runs: list[tuple[int, int]],
    data_runs: list[tuple[int, int]],
    data_offset: int,
    page_size: int,
) -> list[LoadSegment]:
    """:func:`plan_segments` from the runs ``[start, end)`` of RAM and of kept pages."""
    segments: list[LoadSegment] = []
    offset = data_offset
    j = 0
    for ram_start, ram_end in ram_runs:
        runs: list[tuple[int, int]] = []
        while j < len(data_runs) and data_runs[j][0] < ram_end:
            runs.append(data_runs[j])
            j += 1
        if not runs or runs[0][0] > ram_start:
            first_data = runs[0][0] if runs else ram_end
            segments.append(LoadSegment(ram_start, ram_start, first_data, 0))
        for k, (a, b) in enumerate(runs):
            mem_end = runs[k + 1][0] if k + 1 < len(runs) else ram_end
            segments.append(LoadSegment(a, b, mem_end, offset))
            offset += (b - a) * page_size
    return segments


def _vaddr_map(src: Dump) -> tuple[list[int], list[tuple[int, int, int]]]:
    """(starts, [(paddr start, paddr end, vaddr - paddr)]) from an ELF source's
    segments, the first one covering an address winning (as the reader does)."""
    segments = getattr(src, "segments", None) or []
    out: list[tuple[int, int, int]] = []
    covered = 0
    for seg in sorted(segments, key=lambda s: (s.paddr, -s.memsz)):
        end = seg.paddr + seg.memsz
        if end <= covered:
            continue
        start = max(seg.paddr, covered)
        out.append((start, end, seg.vaddr - seg.paddr))
        covered = end
    return [o[0] for o in out], out


def encode_headers(src: Dump, segments: list[LoadSegment], note_offset: int, e_flags: int) -> bytes:
    """ELF header, program headers (and section header 0 for PN_XNUM), notes."""
    order = "<" if src.header.little_endian else ">"
    ps = src.page_size
    phnum = 1 + len(segments)
    xnum = phnum >= PN_XNUM
    phoff = EHDR_SIZE
    shoff = phoff + phnum * PHDR_SIZE if xnum else 0
    ident = b"\x7fELF" + bytes([2, 1 if order == "<" else 2, 1, 0]) + bytes(8)
    machine = MACHINE_NUMBERS.get(src.header.machine, 62)
    out = bytearray(
        struct.pack(
            order + "16sHHIQQQIHHHHHH",
            ident, ET_CORE, machine, 1, 0, phoff, shoff, e_flags, EHDR_SIZE, PHDR_SIZE,
            PN_XNUM if xnum else phnum, SHDR_SIZE if xnum else 0, 1 if xnum else 0, 0,
        )
    )  # fmt: skip
    phdr = struct.Struct(order + "IIQQQQQQ")
    note_size = len(src.note_data)
    out += phdr.pack(PT_NOTE, 0, note_offset, 0, 0, note_size, note_size, 0)
    starts, vmap = _vaddr_map(src)
    for seg in segments:
        paddr = seg.start * ps
        i = bisect.bisect_right(starts, paddr) - 1
        vaddr = paddr + vmap[i][2] if i >= 0 and paddr < vmap[i][1] else 0
        filesz = (seg.data_end - seg.start) * ps
        memsz = (seg.mem_end - seg.start) * ps
        out += phdr.pack(
            PT_LOAD, PF_RWX, seg.offset if filesz else 0, vaddr, paddr, filesz, memsz, 0
        )
    if xnum:
        # Section header 0 carries the real program header count in sh_info.
        out += struct.pack(order + "IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, phnum, 0, 0)
    return bytes(out)


def elf_note_offset(segment_count: int) -> int:
    """Where the notes go: right after the headers."""
    phnum = 1 + segment_count
    return EHDR_SIZE + phnum * PHDR_SIZE + (SHDR_SIZE if phnum >= PN_XNUM else 0)


def elf_data_offset(segment_count: int, note_size: int, page_size: int) -> int:
    """Where page data starts: the page boundary after the notes."""
    end = elf_note_offset(segment_count) + note_size
    return -(-end // page_size) * page_size


def write_elf_pages(
    sink: Sink,
    data_offset: int,
    page_size: int,
    batches: Iterator[Batch],
    progress: Callable[[int], None] | None = None,
    *,
    sparse: bool = False,
) -> tuple[int, int]:
    """Kept pages, back to back in pfn order; returns (pages, end of data).

    ``sparse``: the sink is a new regular file, so all-zero pages are skipped, left as
    holes that read back as zeros (a third of a busy guest's /proc/vmcore at level 0);
    the caller's ``finish`` sets the file's size."""
    pos = data_offset
    pages = 0
    for batch in batches:
        if sparse:
            zero = zero_mask(batch.blob, page_size)
            view = memoryview(batch.blob).cast("B")
            for start, end in bitmap_runs(~zero):
                sink.pwrite(pos + start * page_size, view[start * page_size : end * page_size])
        else:
            sink.pwrite(pos, batch.blob)
        pos += len(batch.blob)
        pages += len(batch.pfns)
        if progress is not None:
            progress(pages)
    return pages, pos


def mark_elf_incomplete(sink: Sink, header: bytes, little_endian: bool) -> None:
    """Rewrite the ELF header with DUMP_ELF_INCOMPLETE in e_flags (best effort)."""
    order = "<" if little_endian else ">"
    fixed = bytearray(header[:EHDR_SIZE])
    flags_offset = 48  # e_flags in Elf64_Ehdr
    flags = struct.unpack_from(order + "I", fixed, flags_offset)[0] | DUMP_ELF_INCOMPLETE
    struct.pack_into(order + "I", fixed, flags_offset, flags)
    try:
        sink.pwrite(0, bytes(fixed))
    except OSError:
        pass  # the caller still gets the original error
