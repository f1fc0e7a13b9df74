"""The dump store: uploads streamed to an incomplete file with their sha256 computed on the
way in, renamed to ``dumps/<sha256>`` (mode 0600) only when whole; one file per content."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from kdumpkit.server.config import ServerConfig

#: an incomplete upload's suffix: never listed, removed at start
PARTIAL = ".part"


class StoreError(Exception):
    """An upload the store refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Incoming:
    """One upload being received: write chunks, then :meth:`commit` or :meth:`abort`."""

    def __init__(self, store: DumpStore, expected: int | None) -> None:
        self.store = store
        self.path = store.config.incoming_dir / f"{uuid.uuid4().hex}{PARTIAL}"
        self.size = 0
        self.expected = expected
        self._hash = hashlib.sha256()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        """Append a chunk; refuse once the size limit or the store's room is passed."""
        self.size += len(chunk)
        if self.size > self.store.config.max_upload:
            raise StoreError(
                f"upload larger than the limit of {self.store.config.max_upload} bytes", 413
            )
        if self.expected is None:
            self.store.check_room(len(chunk))
        try:
            self._file.write(chunk)
        except OSError as exc:
            raise StoreError(f"the dump store is full: {exc.strerror}", 507) from None
        self._hash.update(chunk)

    def commit(self) -> tuple[str, Path]:
        """fsync, rename to the content's name; (sha256, path). Same content: the one copy."""
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            self.abort()
            raise StoreError(f"the dump store is full: {exc.strerror}", 507) from None
        self._file.close()
        if self.expected is not None and self.size != self.expected:
            self.abort()
            raise StoreError(f"received {self.size} of {self.expected} bytes", 400)
        digest = self._hash.hexdigest()
        final = self.store.path_of(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            self.path.unlink()
        else:
            os.rename(self.path, final)
            _fsync_dir(final.parent)
        return digest, final

    def abort(self) -> None:
        """Drop the partial file."""
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DumpStore:
    """Files under ``data/dumps`` and ``data/incoming``."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        for directory in (config.data, config.store_dir, config.incoming_dir):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def clean_incoming(self) -> int:
        """Remove what a killed server left half-received; how many files."""
        removed = 0
        for path in self.config.incoming_dir.glob(f"*{PARTIAL}"):
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def path_of(self, sha256: str) -> Path:
        """Where the dump of this content lives (the name is a hex digest: no path tricks)."""
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.config.store_dir / sha256[:2] / sha256

    def used_bytes(self) -> int:
        """Bytes of complete and incoming dumps."""
        total = 0
        for directory in (self.config.store_dir, self.config.incoming_dir):
            for root, _dirs, files in os.walk(directory):
                for name in files:
                    try:
                        total += os.stat(os.path.join(root, name)).st_blocks * 512
                    except FileNotFoundError:
                        pass
        return total

    def check_room(self, size: int) -> None:
        """Refuse (507) an upload of ``size`` more bytes that would pass the cap or leave
        the file system with less than ``min_free``."""
        stat = os.statvfs(self.config.data)
        free = stat.f_bavail * stat.f_frsize
        if free - size < self.config.min_free:
            raise StoreError(f"the dump store is full: {free} bytes free, {size} more needed", 507)
        if self.config.store_cap and self.used_bytes() + size > self.config.store_cap:
            raise StoreError(
                f"the dump store is full: its cap of {self.config.store_cap} bytes", 507
            )

    def begin(self, expected: int | None) -> Incoming:
        """Start receiving an upload of ``expected`` bytes (None: unknown, chunked)."""
        if expected is not None:
            if expected > self.config.max_upload:
                raise StoreError(
                    f"upload of {expected} bytes larger than the limit of "
                    f"{self.config.max_upload} bytes",
                    413,
                )
            self.check_room(expected)
        return Incoming(self, expected)

    def delete(self, sha256: str) -> None:
        """Remove a dump's file (retention, or an admin's delete)."""
        self.path_of(sha256).unlink(missing_ok=True)
