"""The page pipeline writers share: read kept pages in batches, find zero pages,
compress (in threads if asked) and hand batches back in pfn order.

Memory is bounded: at most ``window`` batches of :data:`BATCH_PAGES` pages are
in flight at once whatever the dump's size.  Page bytes are not copied on the
way: a batch of an ELF source is a view of the mapped input, zero pages are
found over the whole batch at once (a ``uint64`` row per page), and only the
non-zero pages go through the codec, a slice of the view each.

Parallel compression: zstd compresses a whole batch per call (the GIL released
once), so threads scale; zlib, lzo and snappy take a call per page, and threads
doing that spend their time handing the GIL to each other, so zlib (slow enough
to be worth it) goes to worker processes and lzo/snappy stay on one thread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from kdumpkit.dump.base import Bitmap, Dump
from kdumpkit.dump.compress import CODECS, Codec

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

BATCH_PAGES = 256
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Batch:
    """Kept pages in pfn order, and once compressed, their stored form."""

    pfns: np.ndarray
    #: The pages' bytes back to back (a view of the input where it is mapped;
    #: released once compressed).
    blob: bytes | memoryview
    #: Per page: bytes stored (0 for a zero page that is shared or dropped).
    sizes: np.ndarray | None = None
    #: Per page: the page_desc codec flag (0 = stored raw).
    flags: np.ndarray | None = None
    #: The stored bytes of the non-zero pages, back to back in pfn order.
    data: bytes | memoryview = b""


def read_batches(src: Dump, keep: Bitmap, threads: int = 1) -> Iterator[Batch]:
    """Kept pages of ``src`` in batches of up to :data:`BATCH_PAGES` (compressed
    sources decode in ``threads`` threads)."""
    for pfns, blob in src.iter_kept_chunks(keep, BATCH_PAGES, threads=threads):
        yield Batch(pfns, blob)


def zero_mask(blob: bytes | memoryview, page_size: int) -> np.ndarray:
    """A bool per page of ``blob``: True where the page is all zeros (vectorised)."""
    words = np.frombuffer(blob, dtype=np.uint64).reshape(-1, page_size // 8)
    return words.max(axis=1, initial=0) == 0  # max vectorises better than any()


def _split_zero(batch: Batch, page_size: int, find_zero: bool) -> tuple[memoryview, np.ndarray]:
    """The batch as bytes, and the numbers of its pages to store; ``sizes`` set
    to 0 for zero pages (with ``find_zero``), to the page size for the others."""
    view = memoryview(batch.blob).cast("B")
    count = len(view) // page_size
    batch.sizes = np.full(count, page_size, dtype=np.int64)
    batch.flags = np.zeros(count, dtype=np.uint32)
    if find_zero:
        zero = zero_mask(view, page_size)
        if zero.any():
            batch.sizes[zero] = 0
            return view, np.flatnonzero(~zero)
    return view, np.arange(count)


def _set_stored(
    batch: Batch, pages: np.ndarray, lengths: np.ndarray, data: bytes, codec: Codec, page_size: int
) -> Batch:
    assert batch.sizes is not None and batch.flags is not None
    batch.sizes[pages] = lengths
    batch.flags[pages] = np.where(lengths < page_size, codec.flag, 0)
    batch.data = data
    batch.blob = b""  # the raw pages are no longer needed
    return batch


def compress_batch(batch: Batch, codec: Codec, page_size: int, find_zero: bool) -> Batch:
    """Fill ``sizes``/``flags``/``data``: each page compressed on its own, kept raw
    when compression does not make it smaller (makedumpfile's rule); zero pages
    (with ``find_zero``) have size 0 and no data."""
    view, pages = _split_zero(batch, page_size, find_zero)
    if not codec.flag:
        if len(pages) == len(batch.pfns):
            batch.data = view  # stored as read: no copy
        else:
            rows = np.frombuffer(view, dtype=np.uint8).reshape(-1, page_size)
            batch.data = rows[pages].tobytes()
            batch.blob = b""
        return batch
    lengths, data = codec.batch_compressor()(view, pages, page_size)
    return _set_stored(batch, pages, lengths, data, codec, page_size)


def _compress_pages_in_worker(
    codec_name: str, page_size: int, pages: bytes
) -> tuple[np.ndarray, bytes]:
    codec = CODECS[codec_name]
    count = len(pages) // page_size
    return codec.batch_compressor()(memoryview(pages), np.arange(count), page_size)


def _start_workers(pool: Executor) -> None:
    # Fork every worker now, before the source starts threads of its own.
    pool.submit(int).result()


#: Pages sent to a worker process per job (several batches: fewer round trips).
JOB_PAGES = 512


def compress_in_processes(
    batches: Iterator[Batch], codec: Codec, page_size: int, find_zero: bool, workers: int
) -> Iterator[Batch]:
    """:func:`compress_batch` over ``batches`` in ``workers`` processes, in order.

    For codecs that compress a page per call (zlib): threads making a call per
    4 KiB page spend their time handing the GIL over, processes do not.  Zero
    pages are found here; the others are copied to a worker, about
    :data:`JOB_PAGES` at a time; at most ``workers * 2`` jobs are in flight."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    Group = list[tuple[Batch, np.ndarray, bytes]]
    context = multiprocessing.get_context("fork")
    window = workers * 2
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        _start_workers(pool)
        pending: deque[tuple[Group, Future[tuple[np.ndarray, bytes]]]] = deque()

        def submit(group: Group) -> None:
            raw = b"".join(r for _, _, r in group)
            pending.append((group, pool.submit(_compress_pages_in_worker, codec.name,
                                               page_size, raw)))  # fmt: skip

        def finish() -> Iterator[Batch]:
            group, future = pending.popleft()
            lengths, data = future.result()
            view = memoryview(data)
            first = pos = 0
            for batch, pages, _ in group:
                mine = lengths[first : first + len(pages)]
                size = int(mine.sum())
                yield _set_stored(batch, pages, mine, view[pos : pos + size], codec, page_size)
                first += len(pages)
                pos += size

        group: Group = []
        grouped = 0
        try:
            for batch in batches:
                view, pages = _split_zero(batch, page_size, find_zero)
                if len(pages) == len(batch.pfns):
                    raw = view.tobytes()
                else:
                    raw = np.frombuffer(view, np.uint8).reshape(-1, page_size)[pages].tobytes()
                batch.blob = b""
                group.append((batch, pages, raw))
                grouped += len(pages)
                if grouped >= JOB_PAGES or len(group) >= JOB_PAGES // 16:
                    submit(group)
                    group, grouped = [], 0
                    if len(pending) >= window:
                        yield from finish()
            if group:
                submit(group)
            while pending:
                yield from finish()
        finally:
            for _, job in pending:
                job.cancel()


def ordered_map(work: Callable[[T], R], batches: Iterator[T], threads: int) -> Iterator[R]:
    """``work`` applied to every batch, results in input order; with ``threads > 1``
    a thread pool works ahead by a fixed window."""
    if threads <= 1:
        for batch in batches:
            yield work(batch)
        return
    # Imported here: the one-thread path (and start-up) does without it.
    from concurrent.futures import ThreadPoolExecutor

    window = threads * 4
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kdumpkit-compress") as pool:
        pending: deque[Future[R]] = deque()
        try:
            for batch in batches:
                pending.append(pool.submit(work, batch))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()
