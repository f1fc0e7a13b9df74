"""kdump-compressed dumps ("KDUMP   " / old "DISKDUMP"), as makedumpfile and QEMU write them.

Layout (offsets in blocks of ``block_size``): main header at 0, sub header at 1
followed by the ELF notes, the 1st bitmap (RAM) and 2nd bitmap (dumpable),
then one 24-byte ``page_desc`` per dumpable page, then page data.  A page's
descriptor index is the number of dumpable pages before it (counted from
``start_pfn`` in a ``--split`` file); we answer that in O(1) from a cumulative
popcount per 64-bit word of the 2nd bitmap.  See docs/formats.md.
"""

from __future__ import annotations

import itertools
import struct
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from kdumpkit.dump.base import Dump, DumpHeader, PageState
from kdumpkit.dump.compress import CODEC_BY_FLAG, CODEC_FLAGS, codec_name_of_status
from kdumpkit.dump.errors import DumpError, DumpFormatError, PageNotPresentError
from kdumpkit.dump.notes import Note, pack_note, parse_notes
from kdumpkit.dump.source import ByteSource

SIGNATURES = (b"KDUMP   ", b"DISKDUMP")
STATUS_INCOMPLETE = 0x8
STATUS_EXCLUDED_VMEMMAP = 0x10
PAGE_DESC = np.dtype([("offset", "<i8"), ("size", "<u4"), ("flags", "<u4"), ("page_flags", "<u8")])
PAGE_DESC_SIZE = 24
UTSNAME_FIELDS = ("sysname", "nodename", "release", "version", "machine", "domainname")
MAX_NOTE_BYTES = 64 << 20
#: pfns beyond 2^40 (4 PiB of 4 KiB pages) exist on no machine we can dump.
MAX_MAPNR = 1 << 40
DESC_BATCH = 1 << 14
#: Decompressed pages kept for repeated reads (4 MiB of 4 KiB pages).
PAGE_CACHE_PAGES = 1024
#: Set bits of every byte value.
_POPCOUNT = (
    np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.uint8)
)
#: utsname.machine values whose kernels use 32-bit longs (i386 layout, or ARM32's).
MACHINES_ILP32 = {"i386", "i486", "i586", "i686", "ppc", "s390", "mips", "sparc"}
MACHINES_ARM32 = {"arm", "armv6l", "armv7l", "armv7", "mips", "mipsel"}


@dataclass(frozen=True)
class _Layout:
    """struct formats of one ABI (without byte order) and their sizes."""

    name: str
    header: str
    sub: str


# disk_dump_header: signature, header_version, utsname, timestamp, status, block_size,
# sub_hdr_size, bitmap_blocks, max_mapnr, total_ram_blocks, device_blocks,
# written_blocks, current_cpu, nr_cpus.
# kdump_sub_header: phys_base, dump_level, split, start_pfn, end_pfn, offset_vmcoreinfo,
# size_vmcoreinfo, offset_note, size_note, offset_eraseinfo, size_eraseinfo,
# start_pfn_64, end_pfn_64, max_mapnr_64.
LAYOUT_LP64 = _Layout("lp64", "8si390s6xqqIiiIIIIIIi", "QiiQQqQqQqQQQQ")
LAYOUT_I386 = _Layout("i386", "8si390s2xiiIiiIIIIIIi", "IiiIIqIqIqIQQQ")
# ARM32/MIPS32 align 64-bit members to 8 bytes inside the sub header.
LAYOUT_ARM32 = _Layout("arm32", "8si390s2xiiIiiIIIIIIi", "IiiII4xqI4xqI4xqI4xQQQ")


@dataclass
class KdumpFileHeader:
    """The decoded headers of one kdump-compressed file."""

    signature: bytes
    header_version: int
    utsname: dict[str, str]
    timestamp: int
    timestamp_usec: int
    status: int
    block_size: int
    sub_hdr_size: int
    bitmap_blocks: int
    max_mapnr: int
    nr_cpus: int
    current_cpu: int
    layout: str
    little_endian: bool
    phys_base: int | None = None
    dump_level: int | None = None
    split: int = 0
    start_pfn: int = 0
    end_pfn: int = 0
    offset_vmcoreinfo: int = 0
    size_vmcoreinfo: int = 0
    offset_note: int = 0
    size_note: int = 0
    offset_eraseinfo: int = 0
    size_eraseinfo: int = 0


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("latin-1")


def _guess_layout(machine: str) -> _Layout:
    if machine in MACHINES_ARM32 or machine.startswith("armv"):
        return LAYOUT_ARM32
    if machine in MACHINES_ILP32:
        return LAYOUT_I386
    return LAYOUT_LP64


def parse_kdump_header(source: ByteSource) -> KdumpFileHeader:
    """Decode and validate the main and sub headers of a kdump-compressed file."""
    name = source.name
    if source.size < 8 or source.pread(0, 8) not in SIGNATURES:
        raise DumpFormatError(f"{name}: not a kdump-compressed file (no KDUMP signature)")
    # Byte order: header_version is a small number (0..6) read the right way round.
    (version_le,) = struct.unpack("<i", source.pread(8, 4))
    end = "<" if 0 <= version_le < 0x10000 else ">"
    utsraw = source.pread(12, 390)
    utsname = {f: _cstr(utsraw[i * 65 : (i + 1) * 65]) for i, f in enumerate(UTSNAME_FIELDS)}
    layout = _guess_layout(utsname["machine"])
    hfmt = struct.Struct(end + layout.header)
    (signature, header_version, _, tv_sec, tv_usec, status, block_size, sub_hdr_size,
     bitmap_blocks, max_mapnr, _total_ram, _device, _written, current_cpu,
     nr_cpus) = hfmt.unpack(source.pread(0, hfmt.size))  # fmt: skip
    if not 0 <= header_version <= 64:
        raise DumpFormatError(f"{name}: header_version {header_version} is not a known version")
    if block_size & (block_size - 1) or not 512 <= block_size <= 1 << 20:
        raise DumpFormatError(f"{name}: block_size {block_size} is not a power of two in 512..1M")
    hdr = KdumpFileHeader(
        signature=signature, header_version=header_version, utsname=utsname,
        timestamp=tv_sec, timestamp_usec=tv_usec, status=status, block_size=block_size,
        sub_hdr_size=sub_hdr_size, bitmap_blocks=bitmap_blocks, max_mapnr=max_mapnr,
        nr_cpus=nr_cpus, current_cpu=current_cpu, layout=layout.name,
        little_endian=end == "<",
    )  # fmt: skip
    if header_version >= 1:
        if sub_hdr_size < 1:
            raise DumpFormatError(f"{name}: sub_hdr_size {sub_hdr_size} leaves no sub header")
        sfmt = struct.Struct(end + layout.sub)
        (hdr.phys_base, dump_level, hdr.split, start_pfn, end_pfn, hdr.offset_vmcoreinfo,
         hdr.size_vmcoreinfo, hdr.offset_note, hdr.size_note, hdr.offset_eraseinfo,
         hdr.size_eraseinfo, start_pfn_64, end_pfn_64,
         max_mapnr_64) = sfmt.unpack(source.pread(block_size, sfmt.size))  # fmt: skip
        hdr.dump_level = dump_level
        # Fields appear in the sub header by version; older ones are garbage or zero.
        if header_version < 3:
            hdr.offset_vmcoreinfo = hdr.size_vmcoreinfo = 0
        if header_version < 4:
            hdr.offset_note = hdr.size_note = 0
        if header_version < 5:
            hdr.offset_eraseinfo = hdr.size_eraseinfo = 0
        if header_version >= 6:
            hdr.max_mapnr = max_mapnr_64
            hdr.start_pfn, hdr.end_pfn = start_pfn_64, end_pfn_64
        elif header_version >= 2:
            hdr.start_pfn, hdr.end_pfn = start_pfn, end_pfn
        if header_version < 2:
            hdr.split = 0
    _validate(hdr, source)
    return hdr


def _validate(hdr: KdumpFileHeader, source: ByteSource) -> None:
    name, bs = source.name, hdr.block_size
    if hdr.max_mapnr > MAX_MAPNR:
        raise DumpFormatError(f"{name}: max_mapnr {hdr.max_mapnr} is beyond any real machine")
    sub_blocks = hdr.sub_hdr_size if hdr.header_version >= 1 else 0
    if sub_blocks < 0 or (1 + sub_blocks) * bs > source.size:
        raise DumpFormatError(
            f"{name}: sub_hdr_size {hdr.sub_hdr_size} runs past the end of the file"
        )
    bitmap_bytes_needed = (hdr.max_mapnr + 7) // 8
    if hdr.bitmap_blocks * bs < bitmap_bytes_needed:
        raise DumpFormatError(
            f"{name}: bitmap_blocks {hdr.bitmap_blocks} is too small for max_mapnr {hdr.max_mapnr}"
        )
    if (1 + sub_blocks + hdr.bitmap_blocks) * bs > source.size:
        raise DumpFormatError(
            f"{name}: bitmap_blocks {hdr.bitmap_blocks} runs past the end of the file"
        )
    for field in ("note", "vmcoreinfo", "eraseinfo"):
        off, size = getattr(hdr, f"offset_{field}"), getattr(hdr, f"size_{field}")
        if size and (off < bs or off + size > source.size or size > MAX_NOTE_BYTES):
            raise DumpFormatError(
                f"{name}: offset_{field} {off:#x} + size_{field} {size:#x} is outside the file"
            )
    if hdr.split and not 0 <= hdr.start_pfn <= hdr.end_pfn <= hdr.max_mapnr:
        raise DumpFormatError(
            f"{name}: split range {hdr.start_pfn:#x}..{hdr.end_pfn:#x} is outside 0..max_mapnr"
        )


def _vmcoreinfo_note(desc: bytes) -> bytes:
    """An ELF note carrying VMCOREINFO text (for version-3 files that have no notes)."""
    return pack_note("VMCOREINFO", 0, desc)


class _Part:
    """One file of a dump: its header, where its descriptors are, and its pfn range."""

    def __init__(self, source: ByteSource, hdr: KdumpFileHeader) -> None:
        self.source = source
        self.hdr = hdr
        bs = hdr.block_size
        sub_blocks = hdr.sub_hdr_size if hdr.header_version >= 1 else 0
        self.bitmap_offset = (1 + sub_blocks) * bs
        self.desc_offset = (1 + sub_blocks + hdr.bitmap_blocks) * bs
        if hdr.split:
            self.start_pfn, self.end_pfn = hdr.start_pfn, min(hdr.end_pfn, hdr.max_mapnr)
        else:
            self.start_pfn, self.end_pfn = 0, hdr.max_mapnr


class KdumpDump(Dump):
    """A kdump-compressed dump: one file, or the files of a ``makedumpfile --split`` set."""

    def __init__(self, sources: list[ByteSource]) -> None:
        if not sources:
            raise DumpFormatError("no kdump file given")
        self.sources = sources
        self.name = sources[0].name if len(sources) == 1 else "+".join(s.name for s in sources)
        parts = [_Part(src, parse_kdump_header(src)) for src in sources]
        first = parts[0].hdr
        for part in parts[1:]:
            h = part.hdr
            if (h.block_size, h.max_mapnr, h.little_endian) != (
                first.block_size, first.max_mapnr, first.little_endian
            ):  # fmt: skip
                raise DumpFormatError(
                    f"{part.source.name}: not from the same dump as {parts[0].source.name} "
                    "(block size, max_mapnr or byte order differ)"
                )
        if len(parts) > 1:
            if not all(p.hdr.split for p in parts):
                raise DumpFormatError(
                    f"{self.name}: several files given but they are not a --split set"
                )
            parts.sort(key=lambda p: p.start_pfn)
            for a, b in itertools.pairwise(parts):
                if a.end_pfn > b.start_pfn:
                    raise DumpFormatError(f"{b.source.name}: pfn range overlaps {a.source.name}'s")
        self.parts = parts
        self.block_size = bs = first.block_size
        max_mapnr = first.max_mapnr
        self._load_bitmaps(parts, max_mapnr)
        self._part_starts = np.array([p.start_pfn for p in parts], dtype=np.int64)
        self._init_kdump_notes(parts[0])
        incomplete = any(p.hdr.status & STATUS_INCOMPLETE for p in parts)
        machine = first.utsname["machine"] or "unknown"
        compression = codec_name_of_status(first.status)
        self.header = DumpHeader(
            format="kdump",
            machine=machine,
            little_endian=first.little_endian,
            page_size=bs,
            max_pfn=max_mapnr,
            dump_level=first.dump_level,
            compression=compression,
            incomplete=incomplete,
            utsname={k: v for k, v in first.utsname.items()},
            timestamp=first.timestamp,
            extra={
                "signature": first.signature.decode("latin-1"),
                "header_version": first.header_version,
                "layout": first.layout,
                "status": first.status,
                "excluded_vmemmap": bool(first.status & STATUS_EXCLUDED_VMEMMAP),
                "sub_hdr_size": first.sub_hdr_size,
                "bitmap_blocks": first.bitmap_blocks,
                "nr_cpus": first.nr_cpus,
                "current_cpu": first.current_cpu,
                "phys_base": first.phys_base,
                # QEMU's kdump output fills only utsname.machine; its phys_base is a guess.
                "qemu": not first.utsname["release"] and any(n.name == "QEMU" for n in self.notes),
                "split": [
                    {"file": p.source.name, "start_pfn": p.start_pfn, "end_pfn": p.end_pfn}
                    for p in parts
                ] if first.split else [],
                "eraseinfo_size": first.size_eraseinfo,
            },
        )  # fmt: skip

    # --- setup ------------------------------------------------------------------------

    def _load_bitmaps(self, parts: list[_Part], max_mapnr: int) -> None:
        first = parts[0]
        bs = first.hdr.block_size
        per_bitmap_blocks = -(-((max_mapnr + 7) // 8) // bs)
        total = first.hdr.bitmap_blocks
        # Old single-bitmap diskdumps: the only bitmap is both RAM and dumpable.
        two = total >= 2 * per_bitmap_blocks
        half = total // 2 * bs if two else 0
        nbytes = (max_mapnr + 7) // 8
        ram = np.frombuffer(first.source.pread(first.bitmap_offset, nbytes), dtype=np.uint8)
        dumpable = np.zeros(nbytes, dtype=np.uint8)
        for part in parts:
            raw = np.frombuffer(
                part.source.pread(part.bitmap_offset + half, nbytes), dtype=np.uint8
            )
            if len(parts) == 1:
                dumpable = raw.copy()
            else:
                bits = np.unpackbits(raw, bitorder="little")[part.start_pfn : part.end_pfn]
                full = np.unpackbits(dumpable, bitorder="little")
                full[part.start_pfn : part.end_pfn] |= bits
                dumpable = np.packbits(full, bitorder="little")
        # Clear bits beyond max_mapnr in the last byte.
        tail = max_mapnr & 7
        if tail and nbytes:
            mask = np.uint8((1 << tail) - 1)
            dumpable[-1] &= mask
            ram = ram.copy()
            ram[-1] &= mask
        self._ram_packed = ram
        self._dumpable_packed = dumpable
        # Rank index: popcount of every 64-bit word, cumulated.
        padded = np.zeros(-(-nbytes // 8) * 8, dtype=np.uint8)
        padded[:nbytes] = dumpable
        self._words = padded.view("<u8")
        per_word = _POPCOUNT[padded].reshape(-1, 8).sum(axis=1, dtype=np.int64)
        self._rank = np.concatenate(([0], np.cumsum(per_word)))
        self._present: np.ndarray | None = None
        self._page_cache: OrderedDict[int, bytes] = OrderedDict()

    def _init_kdump_notes(self, part: _Part) -> None:
        hdr, src = part.hdr, part.source
        little = hdr.little_endian
        if hdr.size_note:
            note_data = src.pread(hdr.offset_note, hdr.size_note)
        elif hdr.size_vmcoreinfo:
            # header_version 3 recorded only VMCOREINFO.
            note_data = _vmcoreinfo_note(src.pread(hdr.offset_vmcoreinfo, hdr.size_vmcoreinfo))
            little = True
        else:
            note_data = b""
        try:
            notes: list[Note] = parse_notes(note_data, little_endian=little)
        except DumpFormatError as exc:
            raise DumpFormatError(f"{src.name}: {exc}") from None
        self._init_notes(note_data, notes)

    # --- lookups ----------------------------------------------------------------------

    def _bit(self, packed: np.ndarray, pfn: int) -> bool:
        return bool(packed[pfn >> 3] >> (pfn & 7) & 1)

    def _rank_of(self, pfn: int) -> int:
        """Number of dumpable pages with a pfn below ``pfn``."""
        word = pfn >> 6
        count = int(self._rank[word])
        bits = pfn & 63
        if bits:
            count += (int(self._words[word]) & ((1 << bits) - 1)).bit_count()
        return count

    def _part_of(self, pfn: int) -> _Part | None:
        if len(self.parts) == 1:
            part = self.parts[0]
            return part if part.start_pfn <= pfn < part.end_pfn else None
        i = int(np.searchsorted(self._part_starts, pfn, side="right")) - 1
        if i < 0:
            return None
        part = self.parts[i]
        return part if pfn < part.end_pfn else None

    def _descriptor(self, pfn: int) -> tuple[_Part, int, int, int] | None:
        """(part, offset, size, flags) of a dumpable page; None if it was never written."""
        part = self._part_of(pfn)
        if part is None:
            return None
        index = self._rank_of(pfn) - self._rank_of(part.start_pfn)
        pos = part.desc_offset + index * PAGE_DESC_SIZE
        if pos + PAGE_DESC_SIZE > part.source.size:
            if part.hdr.status & STATUS_INCOMPLETE:
                return None
            raise DumpFormatError(
                f"{part.source.name}: truncated: page_desc of pfn {pfn:#x} is past EOF"
            )
        order = "<" if part.hdr.little_endian else ">"
        raw = part.source.pread(pos, PAGE_DESC_SIZE)
        offset, size, flags, _ = struct.unpack(order + "qIIQ", raw)
        if offset == 0:
            return None
        if part.hdr.status & STATUS_INCOMPLETE and offset + size > part.source.size:
            return None  # the descriptor made it to disk, the data did not
        return part, offset, size, flags

    def page_state(self, pfn: int) -> PageState:
        if not 0 <= pfn < self.max_pfn:
            return PageState.HOLE
        if self._bit(self._dumpable_packed, pfn):
            if self._part_of(pfn) is None:
                return PageState.LOST  # a file of the split set is missing
            if self.header.incomplete and self._descriptor(pfn) is None:
                return PageState.LOST
            return PageState.PRESENT
        if self._bit(self._ram_packed, pfn):
            return PageState.EXCLUDED
        return PageState.HOLE

    def _read_present_page(self, pfn: int) -> bytes:
        # Analysis reads the same pages again and again (page tables, struct pages):
        # keep the last decompressed ones.
        cache = self._page_cache
        page = cache.get(pfn)
        if page is not None:
            try:
                cache.move_to_end(pfn)
            except KeyError:
                pass  # another thread evicted it meanwhile
            return page
        desc = self._descriptor(pfn)
        if desc is None:
            raise PageNotPresentError(pfn, "lost", pfn * self.page_size)
        part, offset, size, flags = desc
        page = self._page_data(part, pfn, offset, size, flags)
        cache[pfn] = page
        if len(cache) > PAGE_CACHE_PAGES:
            try:
                cache.popitem(last=False)
            except KeyError:
                pass
        return page

    def _page_data(self, part: _Part, pfn: int, offset: int, size: int, flags: int) -> bytes:
        bs = self.block_size
        name = part.source.name
        if size == 0 or size > bs:
            raise DumpFormatError(
                f"{name}: page_desc of pfn {pfn:#x} has size {size} (block size {bs})"
            )
        if offset < 0 or offset + size > part.source.size:
            if part.hdr.status & STATUS_INCOMPLETE:
                raise PageNotPresentError(pfn, "lost", pfn * bs)
            raise DumpFormatError(
                f"{name}: truncated: data of pfn {pfn:#x} at {offset:#x}+{size} is past EOF"
            )
        data = part.source.pread(offset, size)
        codec_flag = flags & CODEC_FLAGS
        if codec_flag == 0:
            if size != bs:
                raise DumpFormatError(
                    f"{name}: page_desc of pfn {pfn:#x}: uncompressed but {size} bytes, not {bs}"
                )
            return data
        codec = CODEC_BY_FLAG.get(codec_flag)
        if codec is None:
            raise DumpFormatError(f"{name}: page_desc of pfn {pfn:#x} has flags {flags:#x}")
        try:
            page = codec.decompress(data, bs)
        except DumpError:
            raise
        except Exception as exc:  # each codec library raises its own error type
            raise DumpFormatError(
                f"{name}: pfn {pfn:#x}: {codec.name} data does not decompress ({exc})"
            ) from None
        if len(page) != bs:
            raise DumpFormatError(
                f"{name}: pfn {pfn:#x}: {codec.name} data decompresses to {len(page)} bytes, "
                f"not {bs}"
            )
        return page

    # --- bitmaps and bulk access ------------------------------------------------------

    def _unpack(self, packed: np.ndarray) -> np.ndarray:
        return np.unpackbits(packed, bitorder="little", count=self.max_pfn).astype(bool)

    def present_bitmap(self) -> np.ndarray:
        if self._present is None:
            if self.header.incomplete:
                present = np.zeros(self.max_pfn, dtype=bool)
                for part in self.parts:
                    for pfns, descs in self._descriptor_batches(part):
                        present[pfns[self._written(part, descs)]] = True
            else:
                present = self._unpack(self._dumpable_packed)
                if any(p.hdr.split for p in self.parts):
                    covered = np.zeros(self.max_pfn, dtype=bool)
                    for part in self.parts:
                        covered[part.start_pfn : part.end_pfn] = True
                    present &= covered
            self._present = present
        return self._present

    def ram_bitmap(self) -> np.ndarray:
        return self._unpack(self._ram_packed) | self._unpack(self._dumpable_packed)

    def excluded_count(self) -> int:
        """RAM pages that were filtered out (in the 1st bitmap, not in the 2nd)."""
        return int(np.count_nonzero(self.ram_bitmap() & ~self._unpack(self._dumpable_packed)))

    @staticmethod
    def _written(part: _Part, descs: np.ndarray) -> np.ndarray:
        """Which descriptors have their data: all of them, but in an incomplete dump
        the unwritten ones (offset 0) and those whose data is past the end of the file."""
        if not part.hdr.status & STATUS_INCOMPLETE:
            return np.ones(len(descs), dtype=bool)
        offsets = descs["offset"].astype(np.int64)
        ends = offsets + descs["size"].astype(np.int64)
        return (offsets > 0) & (ends <= part.source.size)

    def _descriptor_batches(self, part: _Part) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(pfns, page_desc records) of a part's dumpable pages in pfn order, a window
        of the bitmap at a time (memory stays bounded); records past the end of an
        incomplete file read as offset 0."""
        dtype = PAGE_DESC if part.hdr.little_endian else PAGE_DESC.newbyteorder(">")
        src = part.source
        index = 0
        window = DESC_BATCH * 8  # pfns per step: a step holds at most DESC_BATCH*8 pages
        for lo in range(part.start_pfn, part.end_pfn, window):
            hi = min(lo + window, part.end_pfn)
            first_byte, last_byte = lo >> 3, (hi + 7) >> 3
            bits = np.unpackbits(self._dumpable_packed[first_byte:last_byte], bitorder="little")
            offset_in = lo - first_byte * 8
            pfns = np.flatnonzero(bits[offset_in : offset_in + hi - lo]) + lo
            if not len(pfns):
                continue
            pos = part.desc_offset + index * PAGE_DESC_SIZE
            want = len(pfns) * PAGE_DESC_SIZE
            have = max(0, min(want, src.size - pos)) // PAGE_DESC_SIZE * PAGE_DESC_SIZE
            if have < want and not part.hdr.status & STATUS_INCOMPLETE:
                raise DumpFormatError(f"{src.name}: truncated: the page_desc table runs past EOF")
            descs = np.zeros(len(pfns), dtype=dtype)
            if have:
                descs[: have // PAGE_DESC_SIZE] = np.frombuffer(src.pread(pos, have), dtype=dtype)
            index += len(pfns)
            yield pfns, descs

    def iter_descriptors(
        self, only: np.ndarray | None = None
    ) -> Iterator[tuple[int, int, int, int, _Part]]:
        """(pfn, offset, size, flags, part) of every page with data (of those where
        ``only`` is True), in pfn order, from descriptors read in bulk."""
        for part in self.parts:
            for pfns, descs in self._descriptor_batches(part):
                keep = self._written(part, descs)
                if only is not None:
                    keep &= only[pfns]
                if not keep.all():
                    pfns, descs = pfns[keep], descs[keep]
                for pfn, off, size, flags in zip(
                    pfns.tolist(), descs["offset"].tolist(), descs["size"].tolist(),
                    descs["flags"].tolist(), strict=True,
                ):  # fmt: skip
                    yield pfn, off, size, flags, part

    def iter_pages(self, only: np.ndarray | None = None) -> Iterator[tuple[int, bytes]]:
        """Every page with data (of those where ``only`` is True), in pfn order."""
        for pfn, offset, size, flags, part in self.iter_descriptors(only):
            yield pfn, self._page_data(part, pfn, offset, size, flags)

    def iter_page_chunks(
        self, only: np.ndarray | None = None, max_pages: int = 256, *, threads: int = 1
    ) -> Iterator[tuple[np.ndarray, bytes]]:
        """Pages in groups of up to ``max_pages``, decompressed in ``threads``
        threads (the codecs release the GIL), in pfn order."""
        from kdumpkit.dump.write_pages import ordered_map

        def groups() -> Iterator[list[tuple[int, int, int, int, _Part]]]:
            group: list[tuple[int, int, int, int, _Part]] = []
            for desc in self.iter_descriptors(only):
                group.append(desc)
                if len(group) == max_pages:
                    yield group
                    group = []
            if group:
                yield group

        def decode(group: list[tuple[int, int, int, int, _Part]]) -> tuple[np.ndarray, bytes]:
            pfns = np.fromiter((d[0] for d in group), dtype=np.int64, count=len(group))
            blob = b"".join(self._page_data(part, pfn, off, size, flags)
                            for pfn, off, size, flags, part in group)  # fmt: skip
            return pfns, blob

        yield from ordered_map(decode, groups(), threads)

    def close(self) -> None:
        for src in self.sources:
            src.close()
