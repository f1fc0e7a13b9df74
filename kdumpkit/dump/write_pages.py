"""The page pipeline writers share: read kept pages in batches, find zero pages,
compress (in threads if asked) and hand batches back in pfn order.

Memory is bounded: at most ``window`` batches of :data:`BATCH_PAGES` pages are
in flight at once whatever the dump's size.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from kdumpkit.dump.base import Dump
from kdumpkit.dump.compress import Codec

BATCH_PAGES = 256
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Batch:
    """Kept pages in pfn order, and once compressed, their stored form."""

    pfns: np.ndarray
    #: The pages' bytes back to back (emptied once compressed).
    blob: bytes
    #: Per page: the bytes to store (None for a zero page that is shared or dropped).
    stored: list[bytes | None] | None = None
    #: Per page: the page_desc codec flag (0 = stored raw).
    flags: list[int] | None = None


def read_batches(src: Dump, keep: np.ndarray, threads: int = 1) -> Iterator[Batch]:
    """Kept pages of ``src`` in batches of up to :data:`BATCH_PAGES` (compressed
    sources decode in ``threads`` threads)."""
    for pfns, blob in src.iter_page_chunks(keep, BATCH_PAGES, threads=threads):
        yield Batch(pfns, blob)


def zero_mask(blob: bytes, page_size: int) -> np.ndarray:
    """A bool per page of ``blob``: True where the page is all zeros (vectorised)."""
    words = np.frombuffer(blob, dtype=np.uint64).reshape(-1, page_size // 8)
    return ~words.any(axis=1)


def compress_batch(batch: Batch, codec: Codec, page_size: int, find_zero: bool) -> Batch:
    """Fill ``stored``/``flags``: each page compressed on its own, kept raw when
    compression does not make it smaller (makedumpfile's rule); zero pages None."""
    blob = batch.blob
    count = len(blob) // page_size
    zero = zero_mask(blob, page_size).tolist() if find_zero else [False] * count
    stored: list[bytes | None] = []
    flags: list[int] = []
    compress, flag = codec.compress, codec.flag
    for i in range(count):
        if zero[i]:
            stored.append(None)
            flags.append(0)
            continue
        page = blob[i * page_size : (i + 1) * page_size]
        if flag:
            packed = compress(page)
            if len(packed) < page_size:
                stored.append(packed)
                flags.append(flag)
                continue
        stored.append(page)
        flags.append(0)
    batch.stored, batch.flags = stored, flags
    batch.blob = b""  # the raw pages are no longer needed
    return batch


def ordered_map(work: Callable[[T], R], batches: Iterator[T], threads: int) -> Iterator[R]:
    """``work`` applied to every batch, results in input order; with ``threads > 1``
    a thread pool works ahead by a fixed window."""
    if threads <= 1:
        for batch in batches:
            yield work(batch)
        return
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
