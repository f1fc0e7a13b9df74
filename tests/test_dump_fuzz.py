"""Hostile input: truncated, bit-flipped and crafted ELF, kdump and flattened files must
end in one DumpError (or PageNotPresentError on a page read) in bounded time and
memory, never another exception.  The inputs are small dumps we write ourselves
from a synthetic memory image, so these tests need no fixture."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdumpkit.dump import Dump, DumpError, DumpHeader, PageState
from kdumpkit.dump.notes import NT_PRSTATUS, X86_64_PRSTATUS_SIZE, parse_notes
from kdumpkit.dump.open import open_source
from kdumpkit.dump.source import BytesSource
from kdumpkit.dump.writer import write_dump

PAGE = 4096
MAX_PFN = 48
FUZZ = settings(
    max_examples=120,
    deadline=3000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)


def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    name += b"\0"
    pad = lambda b: b.ljust((len(b) + 3) & ~3, b"\0")  # noqa: E731
    return struct.pack("<III", len(name), len(desc), ntype) + pad(name) + pad(desc)


class MemoryDump(Dump):
    """A dump held in a dict: the source the fuzzed files are written from."""

    def __init__(self) -> None:
        rng = np.random.default_rng(7)
        self.name = "<synthetic>"
        ram = np.zeros(MAX_PFN, dtype=bool)
        ram[1:20] = ram[24:MAX_PFN] = True
        self._ram = ram
        self._present = ram.copy()
        self._present[30:34] = False  # excluded
        self._pages: dict[int, bytes] = {}
        for pfn in np.flatnonzero(self._present).tolist():
            kind = pfn % 3
            if kind == 0:
                self._pages[pfn] = bytes(PAGE)
            elif kind == 1:
                self._pages[pfn] = rng.integers(0, 256, PAGE, dtype=np.uint8).tobytes()
            else:
                self._pages[pfn] = (b"kdumpkit %d " % pfn) * (PAGE // 16) + bytes(PAGE % 16)
                self._pages[pfn] = self._pages[pfn][:PAGE].ljust(PAGE, b"\0")
        vmcoreinfo = b"OSRELEASE=6.1.0-fuzz\nPAGESIZE=4096\nNUMBER(phys_base)=0\nCRASHTIME=1\n"
        note_data = _note(b"CORE", NT_PRSTATUS, bytes(X86_64_PRSTATUS_SIZE)) + _note(
            b"VMCOREINFO", 0, vmcoreinfo
        )
        self.header = DumpHeader(format="memory", max_pfn=MAX_PFN)
        self._init_notes(note_data, parse_notes(note_data))

    def page_state(self, pfn: int) -> PageState:
        if self._present[pfn]:
            return PageState.PRESENT
        return PageState.EXCLUDED if self._ram[pfn] else PageState.HOLE

    def _read_present_page(self, pfn: int) -> bytes:
        return self._pages[pfn]

    def present_bitmap(self) -> np.ndarray:
        return self._present

    def ram_bitmap(self) -> np.ndarray:
        return self._ram


def _written(**options: object) -> bytes:
    out = io.BytesIO()
    write_dump(MemoryDump(), out, **options)  # type: ignore[arg-type]
    return out.getvalue()


def _regular(**options: object) -> bytes:
    """A non-flattened file: the flattened bytes replayed."""
    from kdumpkit.dump.flat import FlatSource

    flat = FlatSource(BytesSource(_written(**options)))
    return flat.pread(0, flat.size)


SAMPLES: dict[str, bytes] = {
    "kdump-zlib": _regular(compress="zlib", exclude_zero=True),
    "kdump-zstd": _regular(compress="zstd"),
    "kdump-snappy": _regular(compress="snappy"),
    "elf": _regular(fmt="elf", exclude_zero=True),
    "flat-kdump": _written(compress="zlib", exclude_zero=True),
    "flat-elf": _written(fmt="elf"),
}


def exercise(data: bytes) -> None:
    """Open and read everything; only DumpError (and subclasses) may escape."""
    try:
        dump = open_source(BytesSource(data, "fuzzed"))
    except DumpError as exc:
        assert "\n" not in str(exc)
        return
    with dump:
        try:
            present = dump.present_bitmap()
            dump.ram_bitmap()
            for _pfn, page in dump.iter_pages():
                assert len(page) == dump.page_size
            for pfn in range(0, min(dump.max_pfn, 4 * MAX_PFN)):
                try:
                    assert len(dump.read_page(pfn)) == dump.page_size
                except DumpError:
                    pass
            assert present.dtype == bool
        except DumpError as exc:
            assert "\n" not in str(exc)


@pytest.mark.parametrize("kind", list(SAMPLES))
def test_samples_read_back(kind: str) -> None:
    src = MemoryDump()
    dump = open_source(BytesSource(SAMPLES[kind]))
    with dump:
        zero_dropped = kind in ("elf",)
        expected = {p: d for p, d in src._pages.items() if not (zero_dropped and d == bytes(PAGE))}
        assert dict(dump.iter_pages()) == expected
        assert dump.page_state(31) == PageState.EXCLUDED
        assert dump.page_state(21) == PageState.HOLE


@pytest.mark.parametrize("kind", list(SAMPLES))
@FUZZ
@given(data=st.data())
def test_truncated(kind: str, data: st.DataObject) -> None:
    raw = SAMPLES[kind]
    exercise(raw[: data.draw(st.integers(0, len(raw) - 1))])


@pytest.mark.parametrize("kind", list(SAMPLES))
@FUZZ
@given(data=st.data())
def test_bit_flips(kind: str, data: st.DataObject) -> None:
    raw = bytearray(SAMPLES[kind])
    # Most of the structure is in the first pages: bias flips toward them.
    limit = data.draw(st.sampled_from([64, 512, 8192, 6 * PAGE, len(raw)]))
    flips = data.draw(
        st.lists(st.integers(0, min(limit, len(raw)) * 8 - 1), min_size=1, max_size=8)
    )
    for bit in flips:
        raw[bit // 8] ^= 1 << (bit % 8)
    exercise(bytes(raw))


INTERESTING = [0, 1, 2, 7, 0x7F, 0xFFF, 0x1000, 0x1001, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
               1 << 40, (1 << 63) - 1, (1 << 64) - 1]  # fmt: skip

#: (offset, struct format) of header fields worth crafting, per sample.
KDUMP_FIELDS = [
    (8, "<I"), (428, "<I"), (432, "<I"), (436, "<I"), (440, "<I"), (460, "<I"),  # main header
    (PAGE + 12, "<I"), (PAGE + 32, "<Q"), (PAGE + 40, "<Q"), (PAGE + 48, "<Q"),
    (PAGE + 56, "<Q"), (PAGE + 80, "<Q"), (PAGE + 88, "<Q"), (PAGE + 96, "<Q"),  # sub header
]  # fmt: skip
ELF_FIELDS = [
    (32, "<Q"), (40, "<Q"), (54, "<H"), (56, "<H"),  # e_phoff, e_shoff, e_phentsize, e_phnum
    *[(64 + 56 * i + off, "<Q") for i in range(4) for off in (8, 16, 24, 32, 40)],  # phdrs
]  # fmt: skip


def _desc_fields(raw: bytes) -> list[tuple[int, str]]:
    sub_hdr_size, bitmap_blocks = struct.unpack_from("<II", raw, 432)
    table = (1 + sub_hdr_size + bitmap_blocks) * PAGE
    return [
        (table + 24 * i + off, fmt)
        for i in range(4)
        for off, fmt in ((0, "<q"), (8, "<I"), (12, "<I"))
    ]


def _craft(raw: bytes, fields: list[tuple[int, str]], data: st.DataObject) -> bytes:
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 3))):
        offset, fmt = data.draw(st.sampled_from(fields))
        size = struct.calcsize(fmt)
        value = data.draw(st.sampled_from(INTERESTING)) % (1 << (8 * size))
        if fmt[-1].islower():  # signed
            value = value - (1 << (8 * size)) if value >= 1 << (8 * size - 1) else value
        if offset + size <= len(out):
            struct.pack_into(fmt, out, offset, value)
    return bytes(out)


@FUZZ
@given(data=st.data())
def test_crafted_kdump_headers(data: st.DataObject) -> None:
    raw = SAMPLES["kdump-zlib"]
    exercise(_craft(raw, KDUMP_FIELDS + _desc_fields(raw), data))


@FUZZ
@given(data=st.data())
def test_crafted_elf_headers(data: st.DataObject) -> None:
    exercise(_craft(SAMPLES["elf"], ELF_FIELDS, data))


def _flat_records(raw: bytes) -> list[int]:
    positions, pos = [], 4096
    while pos + 16 <= len(raw):
        offset, size = struct.unpack_from(">qq", raw, pos)
        if offset == -1:
            break
        positions.append(pos)
        pos += 16 + size
    return positions


@FUZZ
@given(data=st.data())
def test_crafted_flat_records(data: st.DataObject) -> None:
    raw = SAMPLES["flat-kdump"]
    fields = [(p + k, ">q") for p in _flat_records(raw) for k in (0, 8)] + [(16, ">q"), (24, ">q")]
    exercise(_craft(raw, fields, data))


CraftedCase = Callable[[], bytes]


def _kdump_with(**fields: int) -> bytes:
    raw = bytearray(SAMPLES["kdump-zlib"])
    where = {"block_size": (428, "<I"), "bitmap_blocks": (436, "<I"), "max_mapnr": (440, "<I"),
             "max_mapnr_64": (PAGE + 96, "<Q"), "offset_note": (PAGE + 48, "<Q"),
             "size_note": (PAGE + 56, "<Q"), "sub_hdr_size": (432, "<I")}  # fmt: skip
    for name, value in fields.items():
        offset, fmt = where[name]
        struct.pack_into(fmt, raw, offset, value)
    return bytes(raw)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        (dict(block_size=0), "block_size"),
        (dict(block_size=3000), "block_size"),
        (dict(max_mapnr_64=1 << 50), "max_mapnr"),
        (dict(max_mapnr_64=1 << 30), "bitmap_blocks"),
        (dict(bitmap_blocks=1 << 30), "bitmap_blocks"),
        (dict(sub_hdr_size=1 << 30), "sub_hdr_size"),
        (dict(offset_note=1 << 40), "offset_note"),
        (dict(size_note=1 << 40), "offset_note"),
    ],
)
def test_crafted_kdump_fields_are_named(case: dict[str, int], message: str) -> None:
    with pytest.raises(DumpError, match=message):
        open_source(BytesSource(_kdump_with(**case), "crafted.kdump"))


def test_huge_elf_memory_is_refused() -> None:
    raw = bytearray(SAMPLES["elf"])
    # Second phdr is the first PT_LOAD: claim it spans 2^50 bytes of memory.
    struct.pack_into("<Q", raw, 64 + 56 + 40, 1 << 50)
    with pytest.raises(DumpError, match=r"out of proportion|impossible"):
        open_source(BytesSource(bytes(raw), "huge.elf"))
