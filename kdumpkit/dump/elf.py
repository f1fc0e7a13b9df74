"""ELF core dumps: /proc/vmcore, ``makedumpfile -E`` output and QEMU's ELF dumps.

Physical memory is keyed by ``p_paddr``.  Overlapping PT_LOADs (the kernel-text
segment of /proc/vmcore repeats part of a RAM segment) are resolved by keeping
the bytes of the segment that starts first.  ``p_filesz < p_memsz`` is the
excluded tail of a ``makedumpfile -E`` segment; a segment cut short by the end
of the file marks the dump incomplete and its missing pages as lost.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from kdumpkit.dump.base import (
    BITMAP_WINDOW,
    Bitmap,
    Dump,
    DumpHeader,
    PageState,
    bitmap_runs,
    check_count,
)
from kdumpkit.dump.errors import DumpFormatError
from kdumpkit.dump.formats import ELF_MAGIC
from kdumpkit.dump.notes import parse_notes
from kdumpkit.dump.source import ByteSource

ET_CORE = 4
PT_LOAD = 1
PT_NOTE = 4
PN_XNUM = 0xFFFF
EM_NAMES = {3: "i386", 62: "x86_64", 183: "aarch64", 21: "ppc64", 22: "s390x", 243: "riscv64"}
#: makedumpfile -E sets this e_flags bit in an incomplete dump.
DUMP_ELF_INCOMPLETE = 0x1
MAX_PHDRS = 1 << 20
MAX_NOTE_BYTES = 64 << 20
#: Physical addresses beyond 2^52 (4 PiB) exist on no machine we can dump.
MAX_PHYS_ADDR = 1 << 52
READ_CHUNK = 8 << 20
#: Any file may describe up to 2^28 pages (1 TiB of 4 KiB pages); more needs a file
#: of at least one byte per page.
MAX_PFNS_ANY_FILE = 1 << 28


@dataclass(frozen=True)
class Segment:
    """A PT_LOAD as written in the file."""

    paddr: int
    vaddr: int
    offset: int
    filesz: int
    memsz: int
    flags: int = 7


@dataclass(frozen=True)
class _Extent:
    """A non-overlapping piece of physical memory: [start, file_end) has data at
    ``offset``; [file_end, mem_end) is RAM without data."""

    start: int
    file_end: int
    mem_end: int
    offset: int
    lost_from: int  # first address whose data lies beyond EOF (== file_end if none)


class ElfDump(Dump):
    """An ELF core of a kernel's physical memory."""

    def __init__(self, source: ByteSource, *, format_name: str = "elf") -> None:
        self.source = source
        self.name = source.name
        ident = source.pread(0, 16) if source.size >= 16 else b""
        if ident[:4] != ELF_MAGIC:
            raise DumpFormatError(f"{self.name}: not an ELF file")
        elf_class, data_enc = ident[4], ident[5]
        if elf_class not in (1, 2) or data_enc not in (1, 2):
            raise DumpFormatError(
                f"{self.name}: bad ELF class {elf_class} or data encoding {data_enc}"
            )
        self.is64 = elf_class == 2
        end = "<" if data_enc == 1 else ">"
        ehdr_fmt = end + ("16sHHIQQQIHHHHHH" if self.is64 else "16sHHIIIIIHHHHHH")
        ehdr_size = struct.calcsize(ehdr_fmt)
        (_, e_type, e_machine, _, _, e_phoff, e_shoff, e_flags, _, e_phentsize, e_phnum,
         _, _, _) = struct.unpack(ehdr_fmt, source.pread(0, ehdr_size))  # fmt: skip
        if e_type != ET_CORE:
            raise DumpFormatError(f"{self.name}: ELF type {e_type} is not a core file")
        phdr_fmt = end + ("IIQQQQQQ" if self.is64 else "IIIIIIII")
        phdr_size = struct.calcsize(phdr_fmt)
        if e_phnum == PN_XNUM:
            e_phnum = self._extended_phnum(end, e_shoff)
        check_count("ELF program header count", e_phnum, MAX_PHDRS)
        if e_phnum and e_phentsize < phdr_size:
            raise DumpFormatError(f"{self.name}: program header size {e_phentsize} too small")
        table = source.pread(e_phoff, e_phnum * e_phentsize)
        segments: list[Segment] = []
        note_data = bytearray()
        for i in range(e_phnum):
            fields = struct.unpack_from(phdr_fmt, table, i * e_phentsize)
            if self.is64:
                p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, _ = fields
            else:
                p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_flags, _ = fields
            if p_type == PT_NOTE:
                if len(note_data) + p_filesz > MAX_NOTE_BYTES:
                    raise DumpFormatError(f"{self.name}: notes larger than {MAX_NOTE_BYTES} bytes")
                note_data += source.pread(p_offset, p_filesz)
            elif p_type == PT_LOAD and p_memsz:
                if p_filesz > p_memsz or p_paddr + p_memsz > MAX_PHYS_ADDR:
                    raise DumpFormatError(
                        f"{self.name}: PT_LOAD {i} has impossible sizes "
                        f"(paddr {p_paddr:#x}, filesz {p_filesz:#x}, memsz {p_memsz:#x})"
                    )
                segments.append(Segment(p_paddr, p_vaddr, p_offset, p_filesz, p_memsz, p_flags))
        self.segments = segments
        notes = parse_notes(bytes(note_data), little_endian=end == "<")
        self._init_notes(bytes(note_data), notes)
        page_size = (self.vmcoreinfo.page_size if self.vmcoreinfo else None) or 4096
        if page_size & (page_size - 1) or not 512 <= page_size <= 1 << 20:
            raise DumpFormatError(f"{self.name}: page size {page_size} is not a power of two")
        self._extents = self._build_extents(segments, source.size)
        self._starts = [e.start for e in self._extents]
        max_pfn = max(((e.mem_end + page_size - 1) // page_size for e in self._extents), default=0)
        # Bitmaps take a byte per pfn: refuse memory sizes out of proportion to the file
        # (p_memsz is not bounded by the file, a hostile header could ask for terabytes).
        if max_pfn > max(MAX_PFNS_ANY_FILE, source.size):
            raise DumpFormatError(
                f"{self.name}: PT_LOADs describe {max_pfn * page_size:#x} bytes of memory, "
                f"out of proportion to a {source.size}-byte file"
            )
        lost = any(e.lost_from < e.file_end for e in self._extents)
        self.header = DumpHeader(
            format=format_name,
            machine=EM_NAMES.get(e_machine, f"EM_{e_machine}"),
            little_endian=end == "<",
            page_size=page_size,
            max_pfn=max_pfn,
            incomplete=bool(e_flags & DUMP_ELF_INCOMPLETE) or lost,
            extra={
                "elf_class": 64 if self.is64 else 32,
                "e_flags": e_flags,
                "program_headers": e_phnum,
                "segments": [
                    {
                        "paddr": s.paddr,
                        "vaddr": s.vaddr,
                        "offset": s.offset,
                        "filesz": s.filesz,
                        "memsz": s.memsz,
                    }
                    for s in segments
                ],
            },
        )
        self._present: np.ndarray | None = None
        self._ram: np.ndarray | None = None

    def _extended_phnum(self, end: str, e_shoff: int) -> int:
        # With more than 0xfffe program headers, the real count is section 0's sh_info.
        if self.is64:
            sh = self.source.pread(e_shoff, 64)
            return struct.unpack_from(end + "I", sh, 44)[0]
        sh = self.source.pread(e_shoff, 40)
        return struct.unpack_from(end + "I", sh, 28)[0]

    @staticmethod
    def _build_extents(segments: list[Segment], file_size: int) -> list[_Extent]:
        extents: list[_Extent] = []
        covered = 0
        for seg in sorted(segments, key=lambda s: (s.paddr, -s.memsz)):
            start, mem_end = seg.paddr, seg.paddr + seg.memsz
            if mem_end <= covered:
                continue  # wholly inside memory already mapped (the kernel-text PT_LOAD)
            skip = max(0, covered - start)
            start += skip
            file_end = max(start, seg.paddr + seg.filesz)
            offset = seg.offset + skip
            avail = max(0, file_size - offset)
            lost_from = min(file_end, start + avail)
            extents.append(_Extent(start, file_end, mem_end, offset, lost_from))
            covered = mem_end
        return extents

    # --- physical memory --------------------------------------------------------------

    def _overlapping(self, start: int, end: int) -> Iterator[_Extent]:
        i = max(0, bisect.bisect_right(self._starts, start) - 1)
        while i < len(self._extents) and self._extents[i].start < end:
            ext = self._extents[i]
            if ext.mem_end > start:
                yield ext
            i += 1

    def page_state(self, pfn: int) -> PageState:
        start = pfn * self.page_size
        end = start + self.page_size
        state = PageState.HOLE
        for ext in self._overlapping(start, end):
            lo = max(start, ext.start)
            if lo < min(end, ext.lost_from):
                return PageState.PRESENT
            if lo < min(end, ext.file_end):
                state = PageState.LOST
            elif state == PageState.HOLE:
                state = PageState.EXCLUDED
        return state

    def _file_offset(self, start: int, end: int) -> int | None:
        """Where physical ``[start, end)`` is in the file when one extent holds it all."""
        if start < 0 or end <= start:
            return None
        for ext in self._overlapping(start, end):
            if ext.start <= start and end <= ext.lost_from:
                return ext.offset + start - ext.start
            return None
        return None

    def read(self, paddr: int, size: int, *, zero_missing: bool = False) -> bytes:
        """Physical memory; one read when a single extent holds the whole range
        (struct page scans read megabytes at a time), else page by page."""
        offset = self._file_offset(paddr, paddr + size)
        if offset is not None:
            return self.source.pread(offset, size)
        return super().read(paddr, size, zero_missing=zero_missing)

    def read_into(self, paddr: int, buf: memoryview, *, zero_missing: bool = False) -> None:
        readinto = getattr(self.source, "readinto", None)
        offset = self._file_offset(paddr, paddr + len(buf))
        if readinto is not None and offset is not None:
            readinto(offset, buf)
            return
        super().read_into(paddr, buf, zero_missing=zero_missing)

    def _read_present_page(self, pfn: int) -> bytes:
        start = pfn * self.page_size
        return self._read_span(start, start + self.page_size)

    def _read_span(self, start: int, end: int) -> bytes:
        """Bytes [start, end) with anything not in the file as zeros."""
        out = bytearray(end - start)
        for ext in self._overlapping(start, end):
            lo = max(start, ext.start)
            hi = min(end, ext.lost_from)
            if hi > lo:
                out[lo - start : hi - start] = self.source.pread(
                    ext.offset + lo - ext.start, hi - lo
                )
        return bytes(out)

    def _bitmaps(self) -> tuple[np.ndarray, np.ndarray]:
        if self._present is None or self._ram is None:
            ps = self.page_size
            present = np.zeros(self.max_pfn, dtype=bool)
            ram = np.zeros(self.max_pfn, dtype=bool)
            for ext in self._extents:
                ram[ext.start // ps : (ext.mem_end + ps - 1) // ps] = True
                if ext.lost_from > ext.start:
                    present[ext.start // ps : (ext.lost_from + ps - 1) // ps] = True
            self._present, self._ram = present, ram
        return self._present, self._ram

    def present_bitmap(self) -> np.ndarray:
        return self._bitmaps()[0]

    def _runs(self, *, ram: bool) -> list[tuple[int, int]]:
        ps = self.page_size
        return [
            (ext.start // ps, ((ext.mem_end if ram else ext.lost_from) + ps - 1) // ps)
            for ext in self._extents
            if ram or ext.lost_from > ext.start
        ]

    def _window(self, start: int, end: int, *, ram: bool) -> np.ndarray:
        end = min(end, self.max_pfn)
        bits = np.zeros(max(0, end - start), dtype=bool)
        for a, b in self._runs(ram=ram):
            if a < end and b > start:
                bits[max(a, start) - start : min(b, end) - start] = True
        return bits

    def present_window(self, start: int, end: int) -> np.ndarray:
        """Painted from the segments: no bitmap of the whole dump."""
        return self._window(start, end, ram=False)

    def ram_window(self, start: int, end: int) -> np.ndarray:
        """Painted from the segments: no bitmap of the whole dump."""
        return self._window(start, end, ram=True)

    # Not cached: built in a few ms, and a capture kernel should not hold 32 MiB
    # per TiB of RAM for each of them for the whole run.
    def present_bits(self) -> Bitmap:
        """Packed straight from the segments (no byte-per-pfn array)."""
        return Bitmap.from_runs(self.max_pfn, self._runs(ram=False))

    def ram_bits(self) -> Bitmap:
        """Packed straight from the segments (no byte-per-pfn array)."""
        return Bitmap.from_runs(self.max_pfn, self._runs(ram=True))

    def ram_bitmap(self) -> np.ndarray:
        return self._bitmaps()[1]

    def iter_pages(self, only: np.ndarray | None = None) -> Iterator[tuple[int, bytes]]:
        """Pages in pfn order (only those where ``only`` is True), read in large chunks."""
        ps = self.page_size
        bits = self.present_bitmap()
        if only is not None:
            bits = bits & only[: self.max_pfn]
        for start_pfn, end_pfn in bitmap_runs(bits):
            pfn = start_pfn
            while pfn < end_pfn:
                n = min(end_pfn - pfn, READ_CHUNK // ps)
                mapped = self._mapped_span(pfn * ps, (pfn + n) * ps)
                data = mapped if mapped is not None else self._read_span(pfn * ps, (pfn + n) * ps)
                for i in range(n):
                    yield pfn + i, bytes(data[i * ps : (i + 1) * ps])
                pfn += n

    def iter_page_chunks(
        self, only: np.ndarray | None = None, max_pages: int = 256, *, threads: int = 1
    ) -> Iterator[tuple[np.ndarray, bytes | memoryview]]:
        """Runs of consecutive pages (up to ``max_pages``) read in one piece each:
        a read-only view of the mapped file where it is mapped (valid until close)."""
        ps = self.page_size
        bits = self.present_bitmap()
        if only is not None:
            bits = bits & only[: self.max_pfn]
        for start_pfn, end_pfn in bitmap_runs(bits):
            for pfn in range(start_pfn, end_pfn, max_pages):
                n = min(end_pfn - pfn, max_pages)
                mapped = self._mapped_span(pfn * ps, (pfn + n) * ps)
                # A view of the mapped file where possible: no copy of the pages.
                data = mapped if mapped is not None else self._read_span(pfn * ps, (pfn + n) * ps)
                yield np.arange(pfn, pfn + n, dtype=np.int64), data

    def iter_kept_chunks(
        self, keep: Bitmap, max_pages: int = 256, *, threads: int = 1
    ) -> Iterator[tuple[np.ndarray, bytes | memoryview]]:
        """Runs of kept present pages, a window of the bitmaps at a time."""
        ps = self.page_size
        for lo in range(0, self.max_pfn, BITMAP_WINDOW):
            hi = min(self.max_pfn, lo + BITMAP_WINDOW)
            bits = keep.window(lo, hi) & self.present_window(lo, hi)
            for run_start, run_end in bitmap_runs(bits):
                for pfn in range(lo + run_start, lo + run_end, max_pages):
                    n = min(lo + run_end - pfn, max_pages)
                    start, end = pfn * ps, (pfn + n) * ps
                    mapped = self._mapped_span(start, end)
                    data = mapped if mapped is not None else self._read_span(start, end)
                    yield np.arange(pfn, pfn + n, dtype=np.int64), data

    def _mapped_span(self, start: int, end: int) -> memoryview | None:
        """[start, end) without a copy when one extent holds it all and the file is mapped."""
        view = getattr(self.source, "view", None)
        offset = self._file_offset(start, end)
        if view is None or offset is None:
            return None
        span = view(offset, end - start)
        return span if isinstance(span, memoryview) else None

    def close(self) -> None:
        self.source.close()
