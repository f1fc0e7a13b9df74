"""Per-page codecs of kdump-compressed dumps: name <-> page_desc flag <-> functions.

makedumpfile compresses every page on its own: zlib at level 1 (a zlib stream),
LZO1X-1, raw snappy blocks, zstd level 1 (one frame).  The codec libraries are
imported when first used so that a missing optional one (python-lzo) only
matters for dumps that need it.

zlib pages are deflated by libdeflate (the ``deflate`` package) at its level 1
where it is installed: zlib streams any inflater reads (makedumpfile, crash,
zlib), in 0.4-0.5x the CPU of zlib's level 1, -0.3 to +4 % bytes, the same bytes
every run. Without it, zlib itself (then the bytes are makedumpfile's).
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from itertools import repeat
from typing import Any

import numpy as np

from kdumpkit.dump.errors import DumpError

#: page_desc.flags / disk_dump_header.status bits naming a codec.
FLAG_ZLIB = 0x1
FLAG_LZO = 0x2
FLAG_SNAPPY = 0x4
FLAG_ZSTD = 0x20
CODEC_FLAGS = FLAG_ZLIB | FLAG_LZO | FLAG_SNAPPY | FLAG_ZSTD


PageCompressor = Callable[[bytes | memoryview], bytes]
BatchCompressor = Callable[[memoryview, np.ndarray, int], tuple[np.ndarray, bytes]]


class CodecUnavailableError(DumpError):
    """The Python module a codec needs is not installed."""


@dataclass(frozen=True)
class Codec:
    """One page codec: ``compress(page)`` and ``decompress(data, page_size)``."""

    name: str
    flag: int
    compress: Callable[[bytes], bytes]
    decompress: Callable[[bytes, int], bytes]
    #: Makes the fastest page compressor for the calling thread (reused objects,
    #: buffer views accepted); None: :attr:`compress` is that already.
    make_compressor: Callable[[], PageCompressor] | None = None

    #: Makes a compressor of many pages in one call for the calling thread;
    #: None: :meth:`page_compressor` mapped over the pages.
    make_batch_compressor: Callable[[], BatchCompressor] | None = None
    #: Whether compressing pages from several threads at once is faster: the
    #: library releases the GIL for long enough (deflate: 15-40 us a page; zstd: a whole
    #: batch per call). python-lzo holds the GIL; snappy and lzo take ~3 us a page,
    #: less than handing the GIL over costs (measured: two threads no faster).
    threads_scale: bool = False

    def page_compressor(self) -> PageCompressor:
        """``compress`` for many pages in a row in this thread: a bytes-like page
        (a memoryview slice of the input is fine) to its compressed bytes."""
        if self.make_compressor is not None:
            return self.make_compressor()
        return self.compress  # type: ignore[return-value]

    def batch_compressor(self) -> BatchCompressor:
        """For this thread: ``(view, pages, page_size) -> (sizes, data)``, the pages
        numbered ``pages`` of ``view`` each compressed on its own, a page that does
        not get smaller stored raw (makedumpfile's rule), their stored bytes back
        to back."""
        if self.make_batch_compressor is not None:
            return self.make_batch_compressor()
        return _mapped_batch_compressor(self.page_compressor())


def _mapped_batch_compressor(
    compress: Callable[..., bytes], *args: object, needs_bytes: bool = False
) -> BatchCompressor:
    """A batch compressor calling ``compress(page, *args)`` per page through ``map``
    (a loop in C: no Python frame per page). ``needs_bytes``: the function takes
    bytes only, so the batch is copied to bytes once and sliced."""

    def compress_pages(
        view: memoryview, pages: np.ndarray, page_size: int
    ) -> tuple[np.ndarray, bytes]:
        source: bytes | memoryview = view.tobytes() if needs_bytes else view
        starts = pages * page_size
        bounds = map(slice, starts.tolist(), (starts + page_size).tolist())
        pieces: list[bytes | memoryview] = list(map(source.__getitem__, bounds))
        stored: list[bytes | memoryview] = list(map(compress, pieces, *map(repeat, args)))
        sizes = np.fromiter(map(len, stored), dtype=np.int64, count=len(stored))
        for j in np.flatnonzero(sizes >= page_size).tolist():
            stored[j] = pieces[j]  # makedumpfile's rule: stored raw unless smaller
            sizes[j] = page_size
        return sizes, b"".join(stored)

    return compress_pages


#: libdeflate's level for zlib pages. Against zlib's level 1 on the pages of real dumps:
#: level 1 takes 0.4-0.5x the time, -0.3 to +4 % bytes; level 2 0.5-0.7x the time, 1-3 %
#: fewer bytes. Speed first, as makedumpfile's own choice of zlib's fastest level says.
LIBDEFLATE_LEVEL = 1


def _deflate() -> Callable[[bytes | memoryview], bytes]:
    """The function that deflates a zlib page into a zlib stream: libdeflate's (level
    :data:`LIBDEFLATE_LEVEL`) where the ``deflate`` package is installed, else zlib's
    level 1 (makedumpfile's)."""
    libdeflate = _libdeflate()
    if libdeflate is None:
        return partial(zlib.compress, level=1)
    return partial(libdeflate.zlib_compress, compresslevel=LIBDEFLATE_LEVEL)


def _zlib_compress(page: bytes) -> bytes:
    return _deflate()(page)


def _zlib_page_compressor() -> PageCompressor:
    return _deflate()


@cache
def _libdeflate():  # type: ignore[no-untyped-def]
    """The ``deflate`` module (libdeflate), or None."""
    try:
        import deflate
    except ImportError:
        return None
    return deflate


def _zlib_decompress(data: bytes, page_size: int) -> bytes:
    libdeflate = _libdeflate()
    if libdeflate is not None:  # about 1.8x zlib's speed on dump pages
        try:
            return libdeflate.zlib_decompress(data, page_size)  # type: ignore[no-any-return]
        except libdeflate.DeflateError:
            pass  # it says only "failed": zlib, below, says what is wrong
    dec = zlib.decompressobj()
    out = dec.decompress(data, page_size)
    if not dec.eof:
        raise ValueError("zlib stream does not end within one page")
    return out


def _lzo_module():  # type: ignore[no-untyped-def]
    try:
        import lzo
    except ImportError:
        raise CodecUnavailableError(
            "this dump uses LZO but python-lzo is not installed (pip install python-lzo)"
        ) from None
    return lzo


def _lzo_compress(page: bytes) -> bytes:
    # level 1 = LZO1X-1, header=False: the bare lzo1x block makedumpfile writes.
    return _lzo_module().compress(page, 1, False)


def _lzo_page_compressor() -> PageCompressor:
    compress = _lzo_module().compress
    # python-lzo takes bytes only (no buffer views): one 4 KiB copy per page.
    return lambda page: compress(bytes(page), 1, False)


def _lzo_batch_compressor() -> BatchCompressor:
    return _mapped_batch_compressor(_lzo_module().compress, 1, False, needs_bytes=True)


def _zlib_batch_compressor() -> BatchCompressor:
    return _mapped_batch_compressor(_deflate())


def _lzo_decompress(data: bytes, page_size: int) -> bytes:
    return _lzo_module().decompress(data, False, page_size)


def _snappy_module():  # type: ignore[no-untyped-def]
    try:
        import cramjam
    except ImportError:
        raise CodecUnavailableError(
            "this dump uses snappy but cramjam is not installed (pip install cramjam)"
        ) from None
    return cramjam.snappy


def _snappy_compress(page: bytes) -> bytes:
    return bytes(_snappy_module().compress_raw(page))


def _snappy_decompress(data: bytes, page_size: int) -> bytes:
    return bytes(_snappy_module().decompress_raw(data))


@cache
def _zstd_module():  # type: ignore[no-untyped-def]
    try:
        import zstandard
    except ImportError:
        raise CodecUnavailableError(
            "this dump uses zstd but zstandard is not installed (pip install zstandard)"
        ) from None
    return zstandard


_zstd_local = threading.local()


def _zstd_contexts():  # type: ignore[no-untyped-def]
    # zstandard's (de)compressor objects are not thread-safe: one pair per thread.
    ctx = getattr(_zstd_local, "ctx", None)
    if ctx is None:
        zstd = _zstd_module()
        ctx = _zstd_local.ctx = (zstd.ZstdCompressor(level=1), zstd.ZstdDecompressor())
    return ctx


def _zstd_compress(page: bytes) -> bytes:
    return _zstd_contexts()[0].compress(page)


def _zstd_page_compressor() -> PageCompressor:
    return _zstd_contexts()[0].compress  # type: ignore[no-any-return]


def _zstd_batch_compressor() -> BatchCompressor:
    # One call compresses the whole batch, a frame per page, with the GIL released
    # once (per-page calls from several threads fight over the GIL).
    zstd = _zstd_module()
    cctx = _zstd_contexts()[0]

    def compress_pages(
        view: memoryview, pages: np.ndarray, page_size: int
    ) -> tuple[np.ndarray, bytes]:
        if not len(pages):
            return np.zeros(0, dtype=np.int64), b""
        segments = np.empty((len(pages), 2), dtype=np.uint64)
        segments[:, 0] = pages.astype(np.uint64) * np.uint64(page_size)
        segments[:, 1] = page_size
        frames = cctx.multi_compress_to_buffer(
            zstd.BufferWithSegments(view, segments.tobytes()), threads=1
        )
        stored: list[Any] = list(frames)
        sizes = np.fromiter(map(len, stored), dtype=np.int64, count=len(stored))
        for j in np.flatnonzero(sizes >= page_size).tolist():
            start = int(pages[j]) * page_size
            stored[j] = view[start : start + page_size]
            sizes[j] = page_size
        return sizes, b"".join(stored)  # type: ignore[arg-type]

    return compress_pages


def _zstd_decompress(data: bytes, page_size: int) -> bytes:
    return _zstd_contexts()[1].decompress(data, max_output_size=page_size)


def _none_compress(page: bytes) -> bytes:
    return page


def _none_decompress(data: bytes, page_size: int) -> bytes:
    return data


CODECS: dict[str, Codec] = {
    "none": Codec("none", 0, _none_compress, _none_decompress),
    "zlib": Codec(
        "zlib",
        FLAG_ZLIB,
        _zlib_compress,
        _zlib_decompress,
        _zlib_page_compressor,
        _zlib_batch_compressor,
        threads_scale=True,
    ),
    "lzo": Codec(
        "lzo",
        FLAG_LZO,
        _lzo_compress,
        _lzo_decompress,
        _lzo_page_compressor,
        _lzo_batch_compressor,
    ),
    "snappy": Codec("snappy", FLAG_SNAPPY, _snappy_compress, _snappy_decompress),
    "zstd": Codec(
        "zstd",
        FLAG_ZSTD,
        _zstd_compress,
        _zstd_decompress,
        _zstd_page_compressor,
        _zstd_batch_compressor,
        threads_scale=True,
    ),
}
CODEC_BY_FLAG: dict[int, Codec] = {c.flag: c for c in CODECS.values()}


def get_codec(name: str) -> Codec:
    """The codec called ``name``; raises :class:`DumpError` for an unknown name."""
    try:
        codec = CODECS[name]
    except KeyError:
        raise DumpError(f"unknown compression {name!r} (one of {', '.join(CODECS)})") from None
    check_available(codec)
    return codec


def check_available(codec: Codec) -> None:
    """Raise :class:`CodecUnavailableError` now if the codec's module is missing."""
    if codec.name == "lzo":
        _lzo_module()
    elif codec.name == "snappy":
        _snappy_module()
    elif codec.name == "zstd":
        _zstd_module()


def codec_name_of_status(status: int) -> str | None:
    """The codec named by a disk_dump_header ``status`` word, or None if none is."""
    for flag, codec in CODEC_BY_FLAG.items():
        if flag and status & flag:
            return codec.name
    return None
