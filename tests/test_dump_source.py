"""FileSource: reading a large regular file through the mapping keeps RSS bounded;
readinto reads exactly, or says the file is truncated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kdumpkit.dump.errors import DumpFormatError
from kdumpkit.dump.source import DROP_EVERY, FileSource

MIB = 1 << 20


def _rss_file_kib() -> int:
    """The process's resident pages of mapped files (RssFile + RssShmem), KiB."""
    total = 0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("RssFile:", "RssShmem:")):
                total += int(line.split()[1])
    return total


def test_reading_a_large_file_through_the_mapping_keeps_rss_bounded(tmp_path: Path) -> None:
    size = 256 * MIB
    path = tmp_path / "big.bin"
    with open(path, "wb") as f:  # a distinct byte per MiB, so stale data would show
        for i in range(size // MIB):
            f.write(bytes([i % 251 + 1]) * MIB)
    source = FileSource(path)
    try:
        first = source.view(0, MIB)  # held while everything else is read and dropped
        before = _rss_file_kib()
        peak = before
        for offset in range(0, size, MIB):
            chunk = np.frombuffer(source.view(offset, MIB), dtype=np.uint8)
            assert int(chunk[0]) == int(chunk[-1]) == offset // MIB % 251 + 1
            peak = max(peak, _rss_file_kib())
        grown_mib = (peak - before) / 1024
        # Without dropping it would grow by the whole 256 MiB.
        assert DROP_EVERY <= 32 * MIB
        assert grown_mib < 128, grown_mib
        # A view of a dropped range still reads the file's bytes (faulted back in).
        assert bytes(first[:4]) == b"\x01" * 4 and bytes(first[-4:]) == b"\x01" * 4
        assert source.pread(size - MIB, 2) == bytes([(size // MIB - 1) % 251 + 1]) * 2
    finally:
        del first
        source.close()


def test_readinto_fills_the_buffer_and_refuses_reads_past_the_end(tmp_path: Path) -> None:
    path = tmp_path / "small.bin"
    path.write_bytes(bytes(range(256)) * 64)
    source = FileSource(path)
    try:
        buf = bytearray(300)
        source.readinto(1000, memoryview(buf))
        assert buf == (bytes(range(256)) * 64)[1000:1300]
        with pytest.raises(DumpFormatError, match="truncated"):
            source.readinto(16_000, memoryview(bytearray(1000)))
    finally:
        source.close()
