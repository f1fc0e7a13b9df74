"""Write a dump: kdump-compressed, ELF, flattened, or a ``--split`` set.

This is the one API the capture layer and ``kdumpkit convert`` call::

    stats = write_dump(src, "out.kdump", compress="zstd", keep=bitmap, exclude_zero=True)

``keep`` is a bool array of length ``src.max_pfn`` or a packed
:class:`~kdumpkit.dump.base.Bitmap` (None: every page the source has).  The
kdump writer keeps it packed and reads ELF sources a window of it at a time, so
its memory is a bit per pfn plus a fixed window of pages.  Pages are read in
pfn order, compressed independently (with ``threads > 1`` in a thread pool for
zlib and zstd; a fixed window of batches in flight) and written at
their final offsets; to a pipe or with ``flattened=True`` those writes become
makedumpfile's flattened records.  A failed write raises, after setting the
format's incomplete flag in the output where it can.
"""

from __future__ import annotations

import itertools
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from kdumpkit.dump.base import BITMAP_WINDOW, POPCOUNT, Bitmap, Dump, bitmap_runs, merged_runs
from kdumpkit.dump.compress import CODECS, Codec, get_codec
from kdumpkit.dump.elf import DUMP_ELF_INCOMPLETE
from kdumpkit.dump.errors import DumpError
from kdumpkit.dump.kdump import STATUS_INCOMPLETE
from kdumpkit.dump.write_elf import (
    elf_data_offset,
    elf_note_offset,
    encode_headers,
    mark_elf_incomplete,
    plan_segments_of_runs,
    write_elf_pages,
)
from kdumpkit.dump.write_kdump import (
    encode_main_header,
    encode_sub_header,
    mark_incomplete,
    plan_kdump,
    write_bitmaps,
    write_kdump_pages,
)
from kdumpkit.dump.write_pages import (
    Batch,
    compress_batch,
    ordered_map,
    read_batches,
    zero_mask,
)
from kdumpkit.dump.write_sink import FileSink, FlatSink, Sink, is_seekable_file

FORMATS = ("kdump", "elf")
Progress = Callable[[int, int], None]


@dataclass
class WriteStats:
    """What a write did."""

    pages_written: int = 0
    #: Zero pages shared (kdump) or dropped (ELF) because of ``exclude_zero``.
    zero_pages: int = 0
    #: RAM pages of the source not written (filtered by ``keep``, or already excluded).
    excluded_pages: int = 0
    #: Bytes sent to the output (flattened records included).
    bytes_written: int = 0
    #: Size of the (rearranged) file.
    file_size: int = 0
    seconds: float = 0.0
    format: str = "kdump"
    compression: str = "none"
    flattened: bool = False
    files: int = 1

    def add(self, other: WriteStats) -> None:
        """Accumulate the figures of one file of a split set."""
        self.pages_written += other.pages_written
        self.zero_pages += other.zero_pages
        self.bytes_written += other.bytes_written
        self.file_size += other.file_size


class _Output:
    """The destination opened as a sink; closes what it opened."""

    def __init__(self, out: str | os.PathLike[str] | BinaryIO, flattened: bool) -> None:
        self._close: Any = None
        if isinstance(out, (str, os.PathLike)):
            path = os.fspath(out)
            try:
                mode = os.stat(path).st_mode
            except FileNotFoundError:
                mode = 0
            flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
            if not (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
                flags |= os.O_TRUNC
            fd = os.open(path, flags, 0o644)
            if flattened or not is_seekable_file(fd):
                stream = os.fdopen(fd, "wb", buffering=1 << 20)
                self._close = stream
                self.sink: Sink = FlatSink(stream)
                self.flattened = True
            else:
                self._close = fd
                self.sink = FileSink(fd)
                self.flattened = False
            return
        try:
            fd = out.fileno()
        except (AttributeError, OSError, ValueError):
            fd = -1
        if flattened or fd < 0 or not is_seekable_file(fd):
            self.sink = FlatSink(out)
            self.flattened = True
        else:
            out.flush()
            os.ftruncate(fd, 0)
            self.sink = FileSink(fd)
            self.flattened = False

    def close(self) -> None:
        if isinstance(self._close, int):
            os.close(self._close)
        elif self._close is not None:
            self._close.close()
        self._close = None


def _refuse_input_as_output(src: Dump, out: object) -> None:
    """Writing over the file being read would truncate it under its own map."""
    if not isinstance(out, (str, os.PathLike)):
        return
    try:
        same = os.path.samefile(os.fspath(out), src.name)
    except (OSError, TypeError, ValueError):
        return
    if same:
        raise DumpError(f"{os.fspath(out)}: is the dump being read")


def _kept_pages(src: Dump, keep: np.ndarray | Bitmap | None) -> Bitmap:
    if keep is None:
        return src.present_bits()
    if not isinstance(keep, Bitmap):
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (src.max_pfn,):
            raise DumpError(
                f"keep bitmap has {keep.size} entries, the dump has {src.max_pfn} pages"
            )
        keep = Bitmap.from_bool(keep)
    elif keep.size != src.max_pfn:
        raise DumpError(f"keep bitmap has {keep.size} entries, the dump has {src.max_pfn} pages")
    # Pages the source does not have are not kept, a window at a time; a filter's
    # result has none of them and is used as it is.
    kept: Bitmap | None = None
    for lo in range(0, src.max_pfn, BITMAP_WINDOW):
        bits = keep.window(lo, lo + BITMAP_WINDOW)
        absent = bits & ~src.present_window(lo, lo + BITMAP_WINDOW)
        if absent.any():
            kept = kept or keep.copy()
            kept.set_window(lo, bits & ~absent)
    return kept or keep


def _defaults(
    src: Dump,
    utsname: dict[str, str] | None,
    timestamp: int | None,
    phys_base: int | None,
    dump_level: int | None,
    exclude_zero: bool,
) -> tuple[dict[str, str], int, int, int]:
    """Header facts: given, else carried from a kdump source, else from VMCOREINFO."""
    vmci = src.vmcoreinfo
    if utsname is None:
        utsname = dict(src.header.utsname)
        if not utsname.get("release"):
            # An ELF source records no utsname: what VMCOREINFO tells is all we know.
            utsname = {
                "sysname": "Linux",
                "release": (vmci.osrelease if vmci else None) or "",
                "machine": src.header.machine,
            }
    if timestamp is None:
        timestamp = src.header.timestamp or (vmci.crashtime if vmci else None) or 0
    if phys_base is None:
        phys_base = src.header.extra.get("phys_base")
        # QEMU's kdump header holds its own guess: the kernel's VMCOREINFO knows better.
        if phys_base is None or (src.header.extra.get("qemu") and vmci and vmci.phys_base):
            phys_base = (vmci.phys_base if vmci else None) or 0
        phys_offset = vmci.number("PHYS_OFFSET") if vmci else None
        if not phys_base and phys_offset is not None:
            # arm64 has no NUMBER(phys_base); makedumpfile writes NUMBER(PHYS_OFFSET).
            phys_base = phys_offset
    if dump_level is None:
        dump_level = src.header.dump_level or (1 if exclude_zero else 0)
    return utsname, timestamp, phys_base, dump_level


def _batches(
    src: Dump, kept: Bitmap, codec: Codec, find_zero: bool, threads: int
) -> Iterator[Batch]:
    ps = src.page_size
    batches = read_batches(src, kept, threads)
    if codec.flag and not codec.threads_scale:
        threads = 1
    return ordered_map(lambda b: compress_batch(b, codec, ps, find_zero), batches, threads)


def _write_kdump_file(
    src: Dump,
    output: _Output,
    kept: Bitmap,
    codec: Codec,
    *,
    exclude_zero: bool,
    threads: int,
    facts: tuple[dict[str, str], int, int, int],
    progress: Callable[[int], None] | None,
    split: tuple[int, int, int, int] | None = None,
) -> WriteStats:
    """One kdump file; ``split`` = (start_pfn, end_pfn, total dumpable, first index):
    a split file's descriptors fill its table from the start (index 0)."""
    utsname, timestamp, phys_base, dump_level = facts
    total = kept.count()
    if split:
        start, end, total, first_index = split
        plan = plan_kdump(src, total, codec=codec, start_pfn=start, end_pfn=end, split=True)
        file_kept = kept.copy()
        file_kept.fill(0, start, False)
        file_kept.fill(end, kept.size, False)
    else:
        plan = plan_kdump(src, total, codec=codec)
        file_kept, first_index = kept, 0
    if src.header.incomplete:
        # Pages the source lost are missing here too: say so, as makedumpfile does.
        plan.status |= STATUS_INCOMPLETE
    sink = output.sink
    header = encode_main_header(plan, utsname, timestamp, len(src.prstatus))
    sink.pwrite(0, header)
    try:
        sink.pwrite(plan.block_size, encode_sub_header(plan, src, phys_base, dump_level))
        write_bitmaps(sink, plan, src, kept)
        pages, zeros, end_of_data = write_kdump_pages(
            sink, plan,
            _batches(src, file_kept, codec, exclude_zero, threads),
            # makedumpfile --reassemble takes a split file's first data item for the
            # zero page: every split file gets one.
            zero_page=exclude_zero or split is not None,
            first_desc_index=first_index, progress=progress,
        )  # fmt: skip
        sink.finish(end_of_data)
    except BaseException:
        mark_incomplete(sink, plan, header)
        raise
    return WriteStats(
        pages_written=pages, zero_pages=zeros, bytes_written=sink.written,
        file_size=end_of_data, format="kdump", compression=codec.name,
        flattened=output.flattened,
    )  # fmt: skip


def _write_elf_file(
    src: Dump,
    output: _Output,
    kept_bits: Bitmap,
    *,
    exclude_zero: bool,
    threads: int,
    progress: Progress | None,
) -> WriteStats:
    """The ELF file; ``progress(done, total)`` counts the pages that go in it."""
    ps = src.page_size
    zeros = 0
    kept = kept_bits
    if exclude_zero:
        # The program headers depend on which pages are zero: one pass to find them.
        kept = kept_bits.copy()
        for batch in read_batches(src, kept_bits, threads):
            zero = zero_mask(batch.blob, ps)
            if zero.any():
                kept.clear_bits(batch.pfns[zero])
                zeros += int(np.count_nonzero(zero))
    # Runs found a window at a time: memory grows with the number of segments the
    # headers list, not with the pfn range.
    ram_runs = list(merged_runs(
        (lo + a, lo + b)
        for lo in range(0, src.max_pfn, BITMAP_WINDOW)
        for a, b in bitmap_runs(src.ram_window(lo, lo + BITMAP_WINDOW)
                                | kept.window(lo, lo + BITMAP_WINDOW))
    ))  # fmt: skip
    data_runs = list(merged_runs(kept.runs()))
    count = len(plan_segments_of_runs(ram_runs, data_runs, 0, ps))
    data_offset = elf_data_offset(count, len(src.note_data), ps)
    segments = plan_segments_of_runs(ram_runs, data_runs, data_offset, ps)
    note_offset = elf_note_offset(len(segments))
    headers = encode_headers(
        src, segments, note_offset, DUMP_ELF_INCOMPLETE if src.header.incomplete else 0
    )
    sink = output.sink
    sink.pwrite(0, headers + src.note_data)
    try:
        pages, end = write_elf_pages(
            sink, data_offset, ps,
            read_batches(src, kept, threads),
            _progress_adapter(progress, kept.count()),
            # With exclude_zero the first pass took the zero pages out already.
            sparse=isinstance(sink, FileSink) and not exclude_zero,
        )  # fmt: skip
        sink.finish(end)
    except BaseException:
        mark_elf_incomplete(sink, headers, src.header.little_endian)
        raise
    return WriteStats(
        pages_written=pages, zero_pages=zeros, bytes_written=sink.written, file_size=end,
        format="elf", compression="none", flattened=output.flattened,
    )  # fmt: skip


def _progress_adapter(progress: Progress | None, total: int) -> Callable[[int], None] | None:
    if progress is None:
        return None
    return lambda done: progress(done, total)


def write_dump(
    src: Dump,
    out: str | os.PathLike[str] | BinaryIO,
    *,
    fmt: str = "kdump",
    compress: str = "zstd",
    keep: np.ndarray | Bitmap | None = None,
    exclude_zero: bool = False,
    dump_level: int | None = None,
    flattened: bool = False,
    threads: int = 1,
    utsname: dict[str, str] | None = None,
    timestamp: int | None = None,
    phys_base: int | None = None,
    progress: Progress | None = None,
) -> WriteStats:
    """Write ``src`` (the pages ``keep`` selects) to ``out`` as ``fmt``.

    ``out`` is a path or a binary file object; a pipe, character device or
    stream without a file descriptor gets the flattened format.  ``compress`` is
    one of zlib, lzo, snappy, zstd, none (kdump only).  ``progress(done, total)``
    is called after every batch of pages.
    """
    if fmt not in FORMATS:
        raise DumpError(f"unknown dump format {fmt!r} (one of {', '.join(FORMATS)})")
    codec = get_codec(compress) if fmt == "kdump" else CODECS["none"]
    started = time.monotonic()
    _refuse_input_as_output(src, out)
    kept = _kept_pages(src, keep)
    total = kept.count()
    facts = _defaults(src, utsname, timestamp, phys_base, dump_level, exclude_zero)
    output = _Output(out, flattened)
    try:
        if fmt == "kdump":
            stats = _write_kdump_file(
                src, output, kept, codec, exclude_zero=exclude_zero, threads=threads,
                facts=facts, progress=_progress_adapter(progress, total),
            )  # fmt: skip
        else:
            stats = _write_elf_file(
                src, output, kept, exclude_zero=exclude_zero, threads=threads,
                progress=progress,
            )  # fmt: skip
    finally:
        output.close()
    stats.excluded_pages = src.count_windows(ram=True) - total
    stats.seconds = time.monotonic() - started
    return stats


#: Split boundaries are multiples of this many pfns (makedumpfile cuts at its
#: --splitblock-size).  crash counts a split file's dumpable pages a 64-bit bitmap
#: word at a time from start_pfn, so a start that is not a multiple of 64 breaks it.
SPLIT_ALIGN_PFNS = 1024


def split_ranges(kept: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """``parts`` consecutive pfn ranges covering the dump with about as many kept
    pages each (makedumpfile balances dumpable pages the same way), every inner
    boundary a multiple of :data:`SPLIT_ALIGN_PFNS`."""
    max_pfn = kept.size
    counts = np.cumsum(kept, dtype=np.int64)
    total = int(counts[-1]) if max_pfn else 0
    bounds = [0]
    for k in range(1, parts):
        target = total * k // parts
        cut = int(np.searchsorted(counts, target, side="left")) + 1
        cut = round(cut / SPLIT_ALIGN_PFNS) * SPLIT_ALIGN_PFNS
        bounds.append(min(max(bounds[-1], cut), max_pfn))
    bounds.append(max_pfn)
    return list(itertools.pairwise(bounds))


def split_bitmap_ranges(kept: Bitmap, parts: int) -> list[tuple[int, int]]:
    """:func:`split_ranges` of a packed bitmap, without a count per pfn: kept pages
    are counted per block of :data:`SPLIT_ALIGN_PFNS`, then within the one block
    where a cut falls."""
    max_pfn = kept.size
    block_bytes = SPLIT_ALIGN_PFNS // 8
    packed = kept.packed
    padded = np.zeros(-(-len(packed) // block_bytes) * block_bytes, dtype=np.uint8)
    padded[: len(packed)] = packed
    per_block = POPCOUNT[padded].reshape(-1, block_bytes).sum(axis=1, dtype=np.int64)
    block_counts = np.cumsum(per_block)
    total = int(block_counts[-1]) if len(block_counts) else 0
    bounds = [0]
    for k in range(1, parts):
        target = total * k // parts
        block = int(np.searchsorted(block_counts, target, side="left"))
        first = block * SPLIT_ALIGN_PFNS
        before = int(block_counts[block - 1]) if block else 0
        inside = np.cumsum(kept.window(first, first + SPLIT_ALIGN_PFNS), dtype=np.int64)
        # The first pfn where the running count reaches the target, as split_ranges finds.
        cut = first + int(np.searchsorted(inside + before, target, side="left")) + 1
        cut = round(cut / SPLIT_ALIGN_PFNS) * SPLIT_ALIGN_PFNS
        bounds.append(min(max(bounds[-1], cut), max_pfn))
    bounds.append(max_pfn)
    return list(itertools.pairwise(bounds))


def write_split(
    src: Dump,
    outs: list[str | os.PathLike[str]],
    **options: Any,
) -> WriteStats:
    """Write a ``makedumpfile --split`` set: one kdump file per path, each with a
    pfn range holding about the same number of pages.  Takes write_dump's options
    (``fmt`` must be kdump; split files cannot be flattened)."""
    if not outs:
        raise DumpError("no output files for the split set")
    if options.pop("fmt", "kdump") != "kdump":
        raise DumpError("a split set is kdump-compressed only")
    if options.pop("flattened", False):
        raise DumpError("a split set cannot be flattened")
    codec = get_codec(options.pop("compress", "zstd"))
    keep = options.pop("keep", None)
    exclude_zero = bool(options.pop("exclude_zero", False))
    threads = int(options.pop("threads", 1))
    progress = options.pop("progress", None)
    facts = _defaults(
        src, options.pop("utsname", None), options.pop("timestamp", None),
        options.pop("phys_base", None), options.pop("dump_level", None), exclude_zero,
    )  # fmt: skip
    if options:
        raise TypeError(f"unknown options {', '.join(options)}")
    started = time.monotonic()
    kept = _kept_pages(src, keep)
    total = kept.count()
    stats = WriteStats(format="kdump", compression=codec.name, files=len(outs))
    done_before = 0
    for path in outs:
        _refuse_input_as_output(src, path)
    for path, (start, end) in zip(outs, split_bitmap_ranges(kept, len(outs)), strict=True):
        output = _Output(path, False)
        if output.flattened:
            output.close()
            raise DumpError(f"{os.fspath(path)}: a split file must be a regular file")
        base = done_before
        report = None if progress is None else (lambda done, b=base: progress(b + done, total))
        try:
            part = _write_kdump_file(
                src, output, kept, codec, exclude_zero=exclude_zero, threads=threads,
                facts=facts, progress=report, split=(start, end, total, 0),
            )  # fmt: skip
        finally:
            output.close()
        stats.add(part)
        done_before += part.pages_written
    stats.excluded_pages = src.count_windows(ram=True) - total
    stats.seconds = time.monotonic() - started
    return stats
