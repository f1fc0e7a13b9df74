"""Filter a dump and write it: makedumpfile's ``-d LEVEL -c|-l|-p|-z [-E] [-F]`` job.

:func:`save_dump` classifies the pages (:mod:`kdumpkit.capture.filter`), then hands
the keep bitmap to the dump writer, which drops zero pages by content (dump
level bit 1), compresses in parallel and writes kdump-compressed, ELF or
flattened output.  :func:`report_rows` gives makedumpfile's ``--show-stats``
summary of what was dropped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO

from kdumpkit.capture.filter import (
    CLASS_LABELS,
    DL_EXCLUDE_ZERO,
    FilterResult,
    PageClass,
    exclude_unnecessary_pages,
)
from kdumpkit.dump.base import Dump
from kdumpkit.dump.errors import DumpError
from kdumpkit.dump.writer import WriteStats, write_dump, write_split

#: What ``--format`` accepts: ``flat`` is kdump-compressed in the flattened stream.
SAVE_FORMATS = ("kdump", "elf", "flat")
COMPRESSIONS = ("zstd", "zlib", "lzo", "snappy", "none")
Progress = Callable[[int, int], None]


class SaveError(DumpError):
    """The save cannot be done as asked (bad option combination)."""


@dataclass
class SaveResult:
    """What was filtered and what was written."""

    filter: FilterResult
    write: WriteStats

    @property
    def zero_pages(self) -> int:
        return self.write.zero_pages

    @property
    def remaining_pages(self) -> int:
        """Pages with their data in the output (kept, not zero)."""
        return self.filter.kept_pages - self.write.zero_pages


def default_threads() -> int:
    """Compression threads when not told: one per CPU this process may use, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def crashed_utsname(dump: Dump) -> dict[str, str] | None:
    """The crashed kernel's utsname for the kdump header, or None if it cannot be read."""
    if dump.header.utsname.get("release"):
        return dict(dump.header.utsname)
    try:
        from kdumpkit.kernel.info import utsname
    except ImportError:
        return None
    try:
        return utsname(dump)
    except DumpError:
        return None


def save_dump(
    src: Dump,
    out: str | os.PathLike[str] | IO[bytes] | Sequence[str | os.PathLike[str]],
    *,
    dump_level: int = 31,
    fmt: str = "kdump",
    compress: str = "zstd",
    threads: int = 0,
    filter_progress: Progress | None = None,
    write_progress: Progress | None = None,
    filtered: FilterResult | None = None,
) -> SaveResult:
    """Filter ``src`` at ``dump_level`` and write the pages it keeps to ``out``.

    ``out`` is a path, a binary stream (a pipe gets the flattened format), or a
    list of paths for a ``--split`` set.  ``fmt`` is kdump, elf or flat.
    ``filtered`` is a classification already made for ``dump_level``.
    """
    if fmt not in SAVE_FORMATS:
        raise SaveError(f"unknown format {fmt!r} (one of {', '.join(SAVE_FORMATS)})")
    if compress not in COMPRESSIONS:
        raise SaveError(f"unknown compression {compress!r} (one of {', '.join(COMPRESSIONS)})")
    if fmt == "elf" and compress != "none":
        raise SaveError("ELF dumps are not compressed: use --compress none with --format elf")
    split = isinstance(out, (list, tuple))
    if split and fmt != "kdump":
        raise SaveError("a --split set is written in the kdump format only")
    result = filtered or exclude_unnecessary_pages(src, dump_level, progress=filter_progress)
    options = dict(
        compress=compress,
        keep=result.keep_bits,
        exclude_zero=bool(dump_level & DL_EXCLUDE_ZERO),
        dump_level=dump_level,
        threads=threads or default_threads(),
        utsname=crashed_utsname(src),
        progress=write_progress,
    )
    if split:
        stats = write_split(src, list(out), **options)  # type: ignore[arg-type]
    else:
        stats = write_dump(
            src,
            out,  # type: ignore[arg-type]
            fmt="elf" if fmt == "elf" else "kdump",
            flattened=fmt == "flat",
            **options,  # type: ignore[arg-type]
        )
    return SaveResult(result, stats)


def report_rows(result: SaveResult) -> list[tuple[str, int]]:
    """makedumpfile's page summary: (label, pages), indented labels for the classes."""
    filtered = result.filter
    excluded_by_class = [
        (f"    {CLASS_LABELS[cls]}", filtered.excluded.get(cls, 0))
        for cls in PageClass
        if cls != PageClass.KEPT
    ]
    excluded = result.zero_pages + sum(n for _, n in excluded_by_class)
    already_absent = filtered.ram_pages - filtered.input_pages
    rows = [("Original pages", filtered.ram_pages)]
    if already_absent:
        rows.append(("  Absent from the input", already_absent))
    rows += [
        ("  Excluded pages", excluded),
        ("    Pages filled with zero", result.zero_pages),
        *excluded_by_class,
        ("  Remaining pages", result.remaining_pages),
        ("Memory hole", filtered.max_pfn - filtered.ram_pages),
        ("Total pages", filtered.max_pfn),
    ]
    return rows


def report_text(result: SaveResult) -> str:
    """The summary as plain text, makedumpfile's ``--show-stats`` layout."""
    lines = [f"{label:<28}: {pages:#018x}  ({pages})" for label, pages in report_rows(result)]
    if result.filter.ram_pages:
        share = 100 * result.remaining_pages // max(result.filter.ram_pages, 1)
        lines.insert(-2, f"  (The number of pages is reduced to {share}%.)")
    return "\n".join(lines)
