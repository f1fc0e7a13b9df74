"""Random-access byte sources that dump readers parse.

A reader never touches a file directly: it asks a :class:`ByteSource` for
``pread(offset, size)``.  A plain file is one source; a flattened dump is
another (its records indexed once), so kdump and ELF readers work unchanged
over flattened streams.
"""

from __future__ import annotations

import mmap
import os
import resource
from typing import Protocol

from kdumpkit.dump.errors import DumpFormatError

#: Bytes read through the mapping after which the pages read are unmapped again.
DROP_EVERY = 32 << 20


class ByteSource(Protocol):
    """Anything that can read bytes at an offset."""

    name: str
    size: int

    def pread(self, offset: int, size: int) -> bytes:
        """Exactly ``size`` bytes at ``offset``, or :class:`DumpFormatError`."""
        ...

    def close(self) -> None: ...


def _mapping_fits(size: int) -> bool:
    """Whether a file this big may be mapped: under an address-space limit (``ulimit -v``,
    RLIMIT_AS, as fleet workers set) a mapping of most of the limit would leave too
    little for the analysis itself, so files over a quarter of it are read with pread."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return soft == resource.RLIM_INFINITY or size <= soft // 4


class FileSource:
    """A regular file (or /proc/vmcore), memory-mapped where possible.

    Pages of a mapped regular file count in the process's RSS once read, so reading
    a 64 GiB dump through the mapping would show 64 GiB resident (page cache the
    kernel may reclaim, but still). Every :data:`DROP_EVERY` bytes the range read
    since the time before last is unmapped with ``madvise(MADV_DONTNEED)``: RSS stays
    bounded. That is safe while a view of the range is still in use: a shared file
    mapping just faults the page back in from the page cache. /proc/vmcore is left
    alone: the kernel maps the old memory with remap_pfn_range, which is never
    counted in RSS.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.name = os.fspath(path)
        try:
            self._fd = os.open(self.name, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise DumpFormatError(f"{self.name}: cannot open: {exc.strerror}") from None
        self.size = os.fstat(self._fd).st_size
        self._map: mmap.mmap | None = None
        self._drop = hasattr(mmap.mmap, "madvise") and not os.path.realpath(self.name).startswith(
            "/proc/"
        )
        self._read_lo, self._read_hi, self._read_bytes = self.size, 0, 0
        self._last_dropped_lo = self.size
        if self.size > 0 and _mapping_fits(self.size):
            try:
                self._map = mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError):
                self._map = None

    def pread(self, offset: int, size: int) -> bytes:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise DumpFormatError(
                f"{self.name}: truncated: needs bytes {offset:#x}..{offset + size:#x} "
                f"but the file is {self.size:#x} bytes"
            )
        if self._map is not None:
            if self._drop:
                self._count_read(offset, size)
            return self._map[offset : offset + size]
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise DumpFormatError(f"{self.name}: short read at {offset:#x}")
        return data

    def readinto(self, offset: int, buf: memoryview) -> None:
        """Fill ``buf`` with the bytes at ``offset``: one copy by the kernel, where
        :meth:`pread` through the mapping faults every page in and copies again."""
        size = len(buf)
        if offset < 0 or offset + size > self.size:
            self.pread(offset, size)  # raises the precise error
        done = 0
        while done < size:
            got = os.preadv(self._fd, [buf[done:]], offset + done)
            if got <= 0:
                raise DumpFormatError(f"{self.name}: short read at {offset + done:#x}")
            done += got

    def view(self, offset: int, size: int) -> memoryview | bytes:
        """Like :meth:`pread` but without a copy where the file is mapped."""
        if self._map is None:
            return self.pread(offset, size)
        if offset < 0 or size < 0 or offset + size > self.size:
            self.pread(offset, size)  # raises the precise error
        if self._drop:
            self._count_read(offset, size)
        return memoryview(self._map)[offset : offset + size]

    def _count_read(self, offset: int, size: int) -> None:
        """Note a read of the mapping; unmap what was read once there is enough."""
        self._read_lo = min(self._read_lo, offset)
        self._read_hi = max(self._read_hi, offset + size)
        self._read_bytes += size
        if self._read_bytes < DROP_EVERY:
            return
        assert self._map is not None
        # From the start of the previous range too: views still in use when it was
        # dropped (batches being compressed) have faulted some of it back in.
        lo = min(self._read_lo, self._last_dropped_lo)
        start = lo - lo % mmap.PAGESIZE
        try:
            self._map.madvise(mmap.MADV_DONTNEED, start, self._read_hi - start)
        except (OSError, ValueError):
            self._drop = False
        self._last_dropped_lo = self._read_lo
        self._read_lo, self._read_hi, self._read_bytes = self.size, 0, 0

    def close(self) -> None:
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                pass  # a memoryview still refers to it; the GC will unmap it
            self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class BytesSource:
    """Bytes in memory as a source (tests, small dumps received whole)."""

    def __init__(self, data: bytes, name: str = "<memory>") -> None:
        self.name = name
        self._data = bytes(data)
        self.size = len(self._data)

    def pread(self, offset: int, size: int) -> bytes:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise DumpFormatError(
                f"{self.name}: truncated: needs bytes {offset:#x}..{offset + size:#x} "
                f"but the file is {self.size:#x} bytes"
            )
        return self._data[offset : offset + size]

    def close(self) -> None:
        pass
