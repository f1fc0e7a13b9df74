"""Flattened streams built by hand: overlapping records (last write wins), holes,
records out of order, reassembly from a pipe; and writer outputs given as file objects."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import pytest

from kdumpkit.dump import DumpFormatError, open_dump
from kdumpkit.dump.flat import FLAT_HEADER_SIZE, FlatSource, reassemble, reassemble_stream
from kdumpkit.dump.source import BytesSource
from kdumpkit.dump.writer import write_dump


def _stream(records: list[tuple[int, bytes]], *, end: bool = True) -> bytes:
    head = b"makedumpfile\0\0\0\0" + struct.pack(">qq", 1, 1)
    out = bytearray(head.ljust(FLAT_HEADER_SIZE, b"\0"))
    for offset, data in records:
        out += struct.pack(">qq", offset, len(data)) + data
    if end:
        out += b"\xff" * 16
    return bytes(out)


RECORDS = [
    (100, b"A" * 100),  # 100..200
    (0, b"B" * 50),  # 0..50, written out of order
    (150, b"C" * 100),  # 150..250 overlaps A's tail
    (120, b"D" * 10),  # 120..130 inside A, later: wins
    (300, b"E" * 10),  # 250..300 stays a hole
    (0, b""),  # empty record
]


def _expected() -> bytes:
    image = bytearray(310)
    for offset, data in RECORDS:
        image[offset : offset + len(data)] = data
    return bytes(image)


def test_last_write_wins_and_holes_are_zero() -> None:
    flat = FlatSource(BytesSource(_stream(RECORDS), "hand.flat"))
    expected = _expected()
    assert flat.size == len(expected)
    for start in range(0, len(expected), 7):
        for size in (0, 1, 13, 64, len(expected) - start):
            size = min(size, len(expected) - start)
            assert flat.pread(start, size) == expected[start : start + size]
    with pytest.raises(DumpFormatError, match="truncated"):
        flat.pread(300, 11)


def test_reassemble_file_and_pipe(tmp_path: Path) -> None:
    src = tmp_path / "hand.flat"
    src.write_bytes(_stream(RECORDS))
    out = tmp_path / "out"
    assert reassemble(src, out) == 310
    assert out.read_bytes() == _expected()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the writer end of the pipe, as makedumpfile -F | ...
        os.close(read_fd)
        os.write(write_fd, src.read_bytes())
        os._exit(0)
    os.close(write_fd)
    piped = tmp_path / "piped"
    fd = os.open(piped, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with os.fdopen(read_fd, "rb") as stream:
            reassemble_stream(stream, fd, "pipe")
    finally:
        os.close(fd)
        os.waitpid(pid, 0)
    assert piped.read_bytes() == _expected()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (_stream(RECORDS, end=False), "no end marker"),
        (_stream(RECORDS)[:-40], "truncated"),
        (_stream([(-5, b"x")]), "offset"),
        (_stream([(1 << 60, b"x")]), "offset"),
        (_stream([(1 << 40, b"x")]), "holes"),
        (b"makedumpfile\0\0\0\0" + struct.pack(">qq", 2, 1) + bytes(4064), "type 2"),
    ],
)
def test_bad_streams(raw: bytes, message: str) -> None:
    with pytest.raises(DumpFormatError, match=message):
        FlatSource(BytesSource(raw, "bad.flat"))


def test_reassemble_stream_rejects_a_short_stream(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "short", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with pytest.raises(DumpFormatError, match=r"truncated|end marker"):
            reassemble_stream(io.BytesIO(_stream(RECORDS)[:-20]), fd)
    finally:
        os.close(fd)


def test_writer_accepts_file_objects(kdump61: Path, tmp_path: Path) -> None:
    # A regular file object gets the plain format (pwrite on its descriptor),
    # a BytesIO (no descriptor) the flattened one.
    path = tmp_path / "fileobj.kdump"
    with open_dump(kdump61) as src:
        with path.open("wb") as out:
            out.write(b"stale bytes that must go")
            stats = write_dump(src, out, compress="lzo")
        assert not stats.flattened
        memory = io.BytesIO()
        assert write_dump(src, memory, compress="lzo").flattened
        with open_dump(path) as back:
            assert back.count_present() == src.count_present()
            pfn = int(next(iter(back.iter_pfns())))
            assert back.read_page(pfn) == src.read_page(pfn)
        rebuilt = FlatSource(BytesSource(memory.getvalue()))
        assert rebuilt.pread(0, rebuilt.size) == path.read_bytes()


def test_elf_output_keeps_source_virtual_addresses(
    elf61: Path, kdump61: Path, tmp_path: Path
) -> None:
    out = tmp_path / "from-elf.elf"
    with open_dump(elf61) as src, open_dump(kdump61) as ref:
        write_dump(src, out, fmt="elf", keep=ref.present_bitmap())
        with open_dump(out) as ours:
            by_paddr = {s["paddr"]: s["vaddr"] for s in ours.header.extra["segments"]}
            direct_map = next(s for s in src.segments if s.paddr == 0x100000)
            delta = direct_map.vaddr - direct_map.paddr
            inside = [p for p in by_paddr if 0x100000 <= p < 0x100000 + direct_map.memsz]
            assert inside and all(by_paddr[p] == p + delta for p in inside)
            assert dict(ours.iter_pages()) == dict(ref.iter_pages())
