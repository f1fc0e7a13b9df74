"""kdump-compressed variants the fixture does not have: header versions 0-5 (old
"DISKDUMP" files without a sub header), big-endian files, the i386 layout, QEMU's
empty utsname.  Each is made from a file we write, re-encoded the way the older
or other writer lays it out, then read back page for page."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest

from kdumpkit.dump import PageState
from kdumpkit.dump.kdump import LAYOUT_I386, LAYOUT_LP64, KdumpDump, parse_kdump_header
from kdumpkit.dump.source import BytesSource

# The synthetic dump and its written samples live with the fuzz tests; load that
# file by path so this works whatever pytest's import mode.
_spec = importlib.util.spec_from_file_location(
    "kdumpkit_dump_fuzz_samples", Path(__file__).with_name("test_dump_fuzz.py")
)
assert _spec is not None and _spec.loader is not None
_samples = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_samples)
PAGE, SAMPLES, MemoryDump = _samples.PAGE, _samples.SAMPLES, _samples.MemoryDump

BASE = SAMPLES["kdump-zlib"]
MAIN = struct.Struct("<" + LAYOUT_LP64.header)
SUB = struct.Struct("<" + LAYOUT_LP64.sub)


def _fields(raw: bytes) -> tuple[list, list]:  # type: ignore[type-arg]
    return list(MAIN.unpack_from(raw, 0)), list(SUB.unpack_from(raw, PAGE))


def _expected() -> dict[int, bytes]:
    return MemoryDump()._pages


def _read_all(raw: bytes) -> KdumpDump:
    return KdumpDump([BytesSource(raw, "variant.kdump")])


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5])
def test_older_header_versions(version: int) -> None:
    raw = bytearray(BASE)
    main, sub = _fields(raw)
    main[1] = version
    if version < 6:
        sub[11:14] = [0xDEAD, 0xBEEF, 0]  # v6-only fields: garbage must be ignored
    MAIN.pack_into(raw, 0, *main)
    SUB.pack_into(raw, PAGE, *sub)
    with _read_all(bytes(raw)) as dump:
        assert dump.header.extra["header_version"] == version
        assert dict(dump.iter_pages()) == _expected()
        assert dump.header.dump_level == sub[1]
        has_notes = version >= 4
        assert bool(dump.prstatus) == has_notes
        assert (dump.vmcoreinfo is not None) == (version >= 3)
        if version >= 3:
            assert dump.vmcoreinfo is not None and dump.vmcoreinfo.osrelease == "6.1.0-fuzz"


def test_diskdump_without_sub_header() -> None:
    # header_version 0: no sub header, the bitmaps start at block 1.
    main, _ = _fields(BASE)
    sub_blocks = main[7]
    cut = sub_blocks * PAGE
    body = bytearray(BASE[:PAGE] + BASE[(1 + sub_blocks) * PAGE :])
    main[0], main[1], main[7] = b"DISKDUMP", 0, 0
    MAIN.pack_into(body, 0, *main)
    bitmap_blocks = main[8]
    table = (1 + bitmap_blocks) * PAGE
    count = int(np.count_nonzero(MemoryDump().present_bitmap()))
    descs = np.frombuffer(body, dtype="<i8, <u4, <u4, <u8", count=count, offset=table).copy()
    descs["f0"] -= cut  # data moved up by the removed sub header
    body[table : table + descs.nbytes] = descs.tobytes()
    with _read_all(bytes(body)) as dump:
        assert dump.header.extra["signature"] == "DISKDUMP"
        assert dump.header.dump_level is None and dump.vmcoreinfo is None
        assert dict(dump.iter_pages()) == _expected()


def test_i386_layout() -> None:
    main, sub = _fields(BASE)
    uts = bytearray(main[2])
    uts[4 * 65 : 5 * 65] = b"i686".ljust(65, b"\0")
    main[2] = bytes(uts)
    head = struct.pack("<" + LAYOUT_I386.header, *main).ljust(PAGE, b"\0")
    sub_size = struct.calcsize("<" + LAYOUT_I386.sub)
    notes = BASE[sub[7] : sub[7] + sub[8]]
    shift = SUB.size - sub_size
    sub[5] -= shift  # offset_vmcoreinfo
    sub[7] -= shift  # offset_note
    sub_raw = struct.pack("<" + LAYOUT_I386.sub, *sub) + notes
    sub_blocks = main[7]
    raw = head + sub_raw.ljust(sub_blocks * PAGE, b"\0") + BASE[(1 + sub_blocks) * PAGE :]
    hdr = parse_kdump_header(BytesSource(raw))
    assert hdr.layout == "i386" and hdr.offset_note == PAGE + sub_size
    with _read_all(raw) as dump:
        assert dump.header.machine == "i686"
        assert dump.vmcoreinfo is not None and dump.vmcoreinfo.osrelease == "6.1.0-fuzz"
        assert dict(dump.iter_pages()) == _expected()


def test_big_endian_file() -> None:
    main, sub = _fields(BASE)
    raw = bytearray(BASE)
    struct.pack_into(">" + LAYOUT_LP64.header, raw, 0, *main)
    struct.pack_into(">" + LAYOUT_LP64.sub, raw, PAGE, *sub)
    # Notes in big-endian too.
    pos, end = sub[7], sub[7] + sub[8]
    while pos + 12 <= end:
        namesz, descsz, ntype = struct.unpack_from("<III", BASE, pos)
        if namesz == descsz == ntype == 0:
            break
        struct.pack_into(">III", raw, pos, namesz, descsz, ntype)
        pos += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)
    table = (1 + main[7] + main[8]) * PAGE
    count = int(np.count_nonzero(MemoryDump().present_bitmap()))
    descs = np.frombuffer(BASE, dtype="<i8, <u4, <u4, <u8", count=count, offset=table)
    raw[table : table + descs.nbytes] = descs.astype(">i8, >u4, >u4, >u8").tobytes()
    with _read_all(bytes(raw)) as dump:
        assert not dump.header.little_endian
        assert dump.vmcoreinfo is not None and len(dump.prstatus) == 1
        assert dict(dump.iter_pages()) == _expected()


def test_qemu_style_header_is_recorded() -> None:
    main, _ = _fields(BASE)
    main[2] = bytes(4 * 65) + b"x86_64".ljust(65, b"\0") + bytes(65)  # only machine
    raw = bytearray(BASE)
    MAIN.pack_into(raw, 0, *main)
    with _read_all(bytes(raw)) as dump:
        assert dump.header.utsname["release"] == "" and dump.header.machine == "x86_64"
        assert dict(dump.iter_pages()) == _expected()


def test_incomplete_dump_reads_what_was_written() -> None:
    raw = bytearray(BASE)
    main, _ = _fields(raw)
    main[5] |= 0x8  # DUMP_DH_COMPRESSED_INCOMPLETE
    MAIN.pack_into(raw, 0, *main)
    table = (1 + main[7] + main[8]) * PAGE
    count = int(np.count_nonzero(MemoryDump().present_bitmap()))
    descs = np.frombuffer(raw, dtype="<i8, <u4, <u4, <u8", count=count, offset=table).copy()
    half = count // 2
    data_end = int((descs["f0"][:half] + descs["f1"][:half]).max())
    descs[half:] = (0, 0, 0, 0)  # descriptors never written
    raw[table : table + descs.nbytes] = descs.tobytes()
    truncated = bytes(raw[: max(data_end, table + descs.nbytes)])
    pfns = np.flatnonzero(MemoryDump().present_bitmap()).tolist()
    with _read_all(truncated) as dump:
        assert dump.header.incomplete
        got = dict(dump.iter_pages())
        assert got == {p: d for p, d in _expected().items() if p in pfns[:half]}
        assert dump.page_state(pfns[-1]) == PageState.LOST
        assert dump.count_present() == half
