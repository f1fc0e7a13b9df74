"""Where writers put bytes: a regular file (pwrite) or a flattened stream.

Writers address the output by offset, like makedumpfile.  On a regular file
that is ``pwrite``; on a pipe, a terminal or anything not seekable, every write
becomes a record of makedumpfile's flattened format, which ``makedumpfile -R``
or ``kdumpkit reassemble`` turns back into the file.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from typing import BinaryIO, Protocol

from kdumpkit.dump.flat import (
    FLAT_HEADER_SIZE,
    FLAT_SIGNATURE,
    TYPE_FLAT_HEADER,
    VERSION_FLAT_HEADER,
)


class Sink(Protocol):
    """An output addressed by offset."""

    def pwrite(self, offset: int, data: bytes | bytearray | memoryview) -> None: ...

    def finish(self, size: int) -> None:
        """Called once after every write succeeded; ``size`` is the file's final size."""
        ...

    @property
    def written(self) -> int:
        """Bytes sent to the output so far (records included)."""
        ...


#: Bytes copied at a time when the output refuses memory mapped from the input.
COPY_CHUNK = 1 << 20


def _refuses_mapped_input(exc: OSError) -> bool:
    """Whether a write failed because the kernel could not pin the caller's pages.

    Writers pass pages of a memory-mapped /proc/vmcore straight to the output. Such a
    mapping is VM_PFNMAP; filesystems that pin user pages instead of copying them (9p's
    zero-copy path, O_DIRECT, FUSE) fail on it with EFAULT, though the read succeeds.
    """
    return exc.errno == errno.EFAULT


class FileSink:
    """A seekable regular file written with pwrite; holes stay sparse."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._written = 0
        self._copy = False

    def pwrite(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view:
            piece = bytes(view[:COPY_CHUNK]) if self._copy else view
            try:
                n = os.pwrite(self.fd, piece, offset)
            except OSError as exc:
                if self._copy or not _refuses_mapped_input(exc):
                    raise
                self._copy = True  # from now on, through a copy of our own
                continue
            view = view[n:]
            offset += n
            self._written += n

    def finish(self, size: int) -> None:
        os.ftruncate(self.fd, size)

    @property
    def written(self) -> int:
        return self._written


class FlatSink:
    """A stream: each write is a flattened record; works on pipes and stdout."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        header = FLAT_SIGNATURE + struct.pack(">qq", TYPE_FLAT_HEADER, VERSION_FLAT_HEADER)
        self._written = 0
        self._copy = False
        self._write(header.ljust(FLAT_HEADER_SIZE, b"\0"))

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view:
            piece = bytes(view[:COPY_CHUNK]) if self._copy else view
            try:
                n = self.stream.write(piece)
            except OSError as exc:  # see FileSink.pwrite
                if self._copy or not _refuses_mapped_input(exc):
                    raise
                self._copy = True
                continue
            if n is None:  # a non-blocking stream that is full; BinaryIO normally blocks
                raise OSError("output stream would block")
            view = view[n:]
            self._written += n

    def pwrite(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        if len(data):
            self._write(struct.pack(">qq", offset, len(data)))
            self._write(data)

    def finish(self, size: int) -> None:
        self._write(b"\xff" * 16)
        self.stream.flush()

    @property
    def written(self) -> int:
        return self._written


def is_seekable_file(fd: int) -> bool:
    """Whether ``fd`` is a regular file (pwrite works and means something)."""
    return stat.S_ISREG(os.fstat(fd).st_mode)
