"""kallsyms found in the kernel image by its shape (kernels before 6.0), checked against
VMCOREINFO: on the real 6.1 dump with VMCOREINFO's kallsyms keys ignored, and on
synthetic tables, built from that dump's real symbol list, for every layout
scripts/kallsyms has written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from kdumpkit.dump.open import open_dump
from kdumpkit.dump.vmcoreinfo import VmcoreInfo
from kdumpkit.kernel.kallsyms import (
    KALLSYMS_VMCOREINFO,
    KallsymsError,
    decode_tokens,
    find_kallsyms,
    kallsyms,
    kallsyms_addresses,
)
from kdumpkit.kernel.kallsyms_scan import entry_starts, scan_range
from kdumpkit.kernel.x86_64 import address_space

ROOT = Path(__file__).resolve().parent.parent
START_KERNEL_MAP = 0xFFFFFFFF80000000


def without_kallsyms(info: VmcoreInfo) -> VmcoreInfo:
    """``info`` as a kernel before 6.0 writes it: no SYMBOL(kallsyms_*)."""
    text = re.sub(r"SYMBOL\(kallsyms_\w+\)=\w+\n", "", info.text)
    return VmcoreInfo.parse(text.encode())


def zero_missing(dump) -> Callable[[int, int], bytes]:
    space = address_space(dump)
    return lambda address, size: space.read(address, size, zero_missing=True)


def vmcoreinfo_tables(info: VmcoreInfo) -> dict[str, int]:
    return {
        key[len("SYMBOL(") : -1]: value
        for key, value in info.typed().items()
        if key.startswith("SYMBOL(kallsyms_")
    }


@pytest.mark.parametrize("which", ["kdump61", "elf61"])
def test_scan_finds_the_tables_vmcoreinfo_names(request, which: str) -> None:
    with open_dump(request.getfixturevalue(which)) as dump:
        info = dump.vmcoreinfo
        found = find_kallsyms(without_kallsyms(info), zero_missing(dump))
        assert found.tables.symbols() == vmcoreinfo_tables(info)
        # Debian's 6.1.192 has 6.2's kallsyms_seqs_of_names (a stable backport), 3 bytes
        # a symbol between the markers and the token table.
        assert found.tables.seqs_of_names == found.tables.token_table - (3 * 87347 + 7)
        expected = kallsyms(dump)
        assert found.decoded.names == expected.names
        assert found.decoded.addresses.tolist() == expected.addresses


def kdumps_made_by_testbed() -> list[Path]:
    """The real >= 6.0 x86_64 kdumps the testbed made (6.1, 6.12, 7.3), under
    $KDUMPKIT_CACHE (analysis reads x86_64 dumps only)."""
    cache = Path(os.environ.get("KDUMPKIT_CACHE", ROOT / ".cache"))
    found = sorted(cache.glob("*/kdump-*-load/vmcore.kdump"))
    return [path for path in found if "arm64" not in path.parent.name]


@pytest.mark.skipif(not kdumps_made_by_testbed(), reason="no testbed kdumps under $KDUMPKIT_CACHE")
@pytest.mark.parametrize("path", kdumps_made_by_testbed(), ids=lambda path: path.parent.name)
def test_scan_on_testbed_dumps(path: Path) -> None:
    """A test per kernel: 6.1 (pre-6.4 order, seqs_of_names backported), 6.12 (6.4
    order, base-relative), 7.3 (place-relative offsets, no relative base)."""
    with open_dump(path) as dump:
        info = dump.vmcoreinfo
        found = find_kallsyms(without_kallsyms(info), zero_missing(dump))
        assert found.tables.symbols() == vmcoreinfo_tables(info)
        expected = kallsyms(dump)
        assert found.decoded.names == expected.names
        assert found.decoded.addresses.tolist() == expected.addresses


def test_analysis_without_vmcoreinfo_kallsyms(kdump61: Path, tmp_path: Path) -> None:
    """The 6.1 dump with its VMCOREINFO's kallsyms lines renamed (what a 5.x kernel
    writes): `kdumpkit crash` prints what it prints on the dump itself, and `info`
    says where the symbols were found."""
    pre60 = tmp_path / "pre60.kdump"
    pre60.write_bytes(kdump61.read_bytes().replace(b"SYMBOL(kallsyms_", b"NOTSYM(kallsyms_"))
    with open_dump(pre60) as dump:
        assert vmcoreinfo_tables(dump.vmcoreinfo) == {}

    def run(*args: str | Path) -> str:
        return subprocess.run(
            [sys.executable, "-m", "kdumpkit", *map(str, args)],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip

    commands = ["-c", "bt", "-c", "ps", "-c", "mod", "-c", "kmem -i", "-c", "bt -a"]
    assert run("crash", pre60, *commands) == run("crash", kdump61, *commands)
    assert run("report", pre60) == run("report", kdump61)
    code = (
        'print(prog["init_uts_ns"].name.release, prog.cache["kdumpkit.debuginfo"].symbols.source)'
    )
    assert run("shell", pre60, "-e", code) == (
        '(char [65])"6.1.0-56-cloud-amd64" kallsyms, found by scan at 0xffffffff854c9d08\n'
    )
    info = run("info", pre60)
    assert "symbols: kallsyms, found by scan at 0xffffffff854c9d08 (87347 symbols" in info
    assert "types: BTF in memory at 0xffffffff85638070" in info
    assert "symbols: kallsyms, located by VMCOREINFO" in run("info", kdump61)
    shutil.rmtree(tmp_path)


def test_debian_stub_system_map(kdump61: Path, tmp_path: Path) -> None:
    from kdumpkit.analyze.program import open_program
    from kdumpkit.debuginfo.symbols import SymbolError, load_system_map

    stub = tmp_path / "System.map-5.10.0-43-cloud-amd64"
    # Debian 11's linux-image-5.10.0-43-cloud-amd64 ships this, 83 bytes.
    stub.write_text(
        "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n"
    )
    assert stub.stat().st_size == 83
    with pytest.raises(SymbolError, match=r"Debian's placeholder System\.map") as exc:
        load_system_map(stub)
    assert "linux-image-RELEASE-dbg" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(SymbolError, match="placeholder"):
        open_program(kdump61, vmlinux=stub)
    info = subprocess.run(
        [sys.executable, "-m", "kdumpkit", "info", str(kdump61), "--vmlinux", str(stub)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"symbols: {stub} is Debian's placeholder System.map: not usable" in info
    assert "types: BTF in memory at 0xffffffff85638070 (4119994 bytes)" in info


def test_no_btf_names_the_dbg_vmlinux(kdump61: Path) -> None:
    """A kernel built without BTF (Debian 10, RHEL 8.0/8.1): one sentence naming what to give."""
    from kdumpkit.analyze.program import program_from_dump
    from kdumpkit.debuginfo.btf import BtfError
    from kdumpkit.debuginfo.loader import read_vmlinux_btf
    from kdumpkit.debuginfo.symbols import KernelSymbols, load_vmcoreinfo_kallsyms

    with open_dump(kdump61) as dump:
        prog = program_from_dump(dump)
        symbols = load_vmcoreinfo_kallsyms(dump.vmcoreinfo, prog.read)
        keep = [i for i, name in enumerate(symbols.names) if not name.endswith("_BTF")]
        no_btf = KernelSymbols(
            [symbols.names[i] for i in keep], symbols.addresses[keep],
            bytes(symbols.types[i] for i in keep),
        )  # fmt: skip
        # nor a BTF blob between the text and init text, where the search looks
        with mock.patch("kdumpkit.debuginfo.loader.find_vmlinux_btf", return_value=None):
            with pytest.raises(BtfError) as exc:
                read_vmlinux_btf(prog, no_btf)
    message = str(exc.value)
    assert "\n" not in message and "no BTF" in message
    assert "--vmlinux /usr/lib/debug/boot/vmlinux-RELEASE" in message
    assert "linux-image-RELEASE-dbg" in message


def test_no_tables_is_one_sentence(kdump61: Path) -> None:
    with open_dump(kdump61) as dump:
        info = without_kallsyms(dump.vmcoreinfo)
        read = zero_missing(dump)
        low, high = scan_range(info)
        with pytest.raises(KallsymsError, match="no kallsyms tables in the kernel image") as exc:
            find_kallsyms(info, lambda address, size: bytes(size))
        assert "\n" not in str(exc.value)
        # Tables whose symbols disagree with VMCOREINFO (init_uts_ns moved) are refused.
        uts = info.symbol("init_uts_ns")
        moved = VmcoreInfo.parse(
            info.text.replace(f"init_uts_ns)={uts:x}", f"init_uts_ns)={uts + 8:x}").encode()
        )
        with pytest.raises(KallsymsError, match=r"disagree with VMCOREINFO.*init_uts_ns"):
            find_kallsyms(moved, read)
        assert low == info.symbol("_stext") and high == info.symbol("swapper_pg_dir")


# --- synthetic tables -------------------------------------------------------------------


class RealTables:
    """The 6.1 dump's real kallsyms contents, in the kernel's (name table) order."""

    def __init__(self, dump) -> None:
        info = dump.vmcoreinfo
        space = address_space(dump)
        self.dump = dump
        self.info = info
        self.count = space.read_u32(info.symbol("kallsyms_num_syms"))
        names_at, _, table_at, index_at = (info.symbol(name) for name in KALLSYMS_VMCOREINFO)
        self.token_index = space.read(index_at, 512)
        index = np.frombuffer(self.token_index, dtype="<u2")
        self.token_table = space.read(table_at, int(index.max()) + 64)
        self.token_table = self.token_table[: self.token_table.index(b"\0", int(index.max())) + 1]
        self.tokens = decode_tokens(self.token_table, index)
        blob = space.read(names_at, table_at - names_at)
        starts, end = entry_starts(blob, self.count)
        self.entries = [
            blob[a:b] for a, b in zip(starts.tolist(), [*starts[1:].tolist(), end], strict=True)
        ]
        self.addresses = kallsyms_addresses(info, space.read, self.count)
        self.offsets = space.read(info.symbol("kallsyms_offsets"), 4 * self.count)
        self.relative_base = space.read(info.symbol("kallsyms_relative_base"), 8)
        # The real tables' span, blanked out so that only the synthetic ones are found.
        self.blank = (info.symbol("kallsyms_offsets"), index_at + 512)

    def moved_addresses(self) -> np.ndarray:
        """The addresses with per-CPU offsets moved into the kernel image's range, as a
        kernel without CONFIG_KALLSYMS_ABSOLUTE_PERCPU could encode them."""
        small = self.addresses < np.uint64(1 << 32)
        return np.where(small, self.addresses + np.uint64(START_KERNEL_MAP), self.addresses)


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 8)


def build(
    real: RealTables,
    at: int,
    *,
    new_order: bool,
    layout: str,
    marker_width: int = 4,
    seqs: bool = False,
    long_name: bool = False,
) -> tuple[bytes, dict[str, int], np.ndarray]:
    """Synthetic tables placed at ``at``: their bytes, where each table is (as VMCOREINFO
    would name them) and the addresses they encode, in name-table order."""
    entries = list(real.entries)
    if long_name:
        # Linux 6.1 "kallsyms: support big kernel symbols": a 300-token name, stored
        # with a two-byte length (first byte has bit 7 set).
        letter = real.tokens.index(b"t")
        x = real.tokens.index(b"x")
        tokens = bytes([letter] + [x] * 299)
        victim = next(i for i, e in enumerate(entries) if e[1] == letter and len(e) > 3)
        entries[victim] = bytes([0x80 | (300 & 0x7F), 300 >> 7]) + tokens
    names = b"".join(entries)
    marks, where = [], 0
    for i, entry in enumerate(entries):
        if i % 256 == 0:
            marks.append(where)
        where += len(entry)
    markers = np.array(marks, dtype=f"<u{marker_width}").tobytes()
    count = real.count
    num_syms = count.to_bytes(marker_width, "little")
    if layout == "absolute":
        addresses = real.addresses
        address_parts = [("kallsyms_addresses", addresses.astype("<u8").tobytes())]
    elif layout == "real-relative":  # base-relative with absolute per-cpu: the dump's own
        addresses = real.addresses
        address_parts = [
            ("kallsyms_offsets", real.offsets),
            ("kallsyms_relative_base", real.relative_base),
        ]
    elif layout == "relative":
        addresses = real.moved_addresses()
        base = int(addresses.min())
        offsets = (addresses - np.uint64(base)).astype("<u4").tobytes()
        address_parts = [
            ("kallsyms_offsets", offsets),
            ("kallsyms_relative_base", base.to_bytes(8, "little")),
        ]
    else:
        assert layout == "place-relative"
        addresses = real.moved_addresses()
        address_parts = [("kallsyms_offsets", None)]  # filled in once placed
    seq_part = []
    if seqs:
        order = sorted(range(count), key=lambda i: entries[i])
        seq_part = [("kallsyms_seqs_of_names", b"".join(i.to_bytes(3, "big") for i in order))]
    heads = [("kallsyms_num_syms", num_syms), ("kallsyms_names", names)]
    tokens = [
        ("kallsyms_token_table", real.token_table),
        ("kallsyms_token_index", real.token_index),
    ]
    if new_order:  # 6.4 on
        parts = [*heads, ("kallsyms_markers", markers), *tokens, *address_parts, *seq_part]
    else:
        parts = [*address_parts, *heads, ("kallsyms_markers", markers), *seq_part, *tokens]
    out = bytearray()
    placed = {}
    for name, data in parts:
        placed[name] = at + len(out)
        if data is None:  # place-relative offsets: each entry relative to itself
            places = np.uint64(placed[name]) + np.arange(count, dtype=np.uint64) * np.uint64(4)
            relative = (addresses - places).astype(np.int64)  # wraps: small distances
            data = relative.astype("<i4").tobytes()
        out += pad(data)
    placed.pop("kallsyms_markers")
    placed.pop("kallsyms_seqs_of_names", None)
    return bytes(out), placed, addresses


def overlay_reader(real: RealTables, at: int, data: bytes) -> Callable[[int, int], bytes]:
    """The dump's memory with the real tables blanked and ``data`` at ``at``."""
    read = zero_missing(real.dump)
    blank_lo, blank_hi = real.blank

    def reader(address: int, size: int) -> bytes:
        out = bytearray(read(address, size))
        for lo, hi, fill in ((blank_lo, blank_hi, None), (at, at + len(data), data)):
            start, end = max(lo, address), min(hi, address + size)
            if start < end:
                chunk = bytes(end - start) if fill is None else fill[start - lo : end - lo]
                out[start - address : end - address] = chunk
        return bytes(out)

    return reader


LAYOUTS = {
    # name: (build arguments, the kernels that wrote it)
    "absolute-u64-markers": dict(new_order=False, layout="absolute", marker_width=8),  # < 5.x
    "absolute": dict(new_order=False, layout="absolute"),  # no KALLSYMS_BASE_RELATIVE < 6.11
    "base-relative": dict(new_order=False, layout="relative"),  # no ABSOLUTE_PERCPU (arm64)
    "base-relative-percpu-long-name": dict(
        new_order=False, layout="real-relative", long_name=True
    ),  # 6.1
    "seqs-of-names": dict(new_order=False, layout="real-relative", seqs=True),  # 6.2, 6.3
    "new-order-base-relative": dict(new_order=True, layout="relative", seqs=True),  # 6.4+
    "new-order-absolute": dict(new_order=True, layout="absolute", seqs=True),  # 6.4-6.10
    "place-relative": dict(new_order=True, layout="place-relative", seqs=True),  # 7.0
}


@pytest.fixture(scope="module")
def real_tables(fx61: Path):
    with open_dump(fx61 / "vmcore.kdump") as dump:
        yield RealTables(dump)


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_synthetic_layouts(real_tables: RealTables, name: str) -> None:
    real = real_tables
    at = (real.blank[0] & ~0xFFFF) + 0x10000 - 0x1008  # in the image's read-only data
    data, placed, addresses = build(real, at, **LAYOUTS[name])
    found = find_kallsyms(without_kallsyms(real.info), overlay_reader(real, at, data))
    assert found.tables.symbols() == placed
    expected_layout = {"real-relative": "base-relative", "relative": "base-relative"}
    layout = LAYOUTS[name]["layout"]
    assert found.tables.layout == expected_layout.get(layout, layout)
    assert found.tables.count == real.count
    assert found.decoded.addresses.tolist() == np.sort(addresses, kind="stable").tolist()
    names = kallsyms(real.dump).names
    if LAYOUTS[name].get("long_name"):
        long = [n for n in found.decoded.names if len(n) == 299]
        assert long == ["x" * 299]
        assert len(set(names) - set(found.decoded.names)) == 1
    elif layout in ("absolute", "real-relative"):
        assert found.decoded.names == names
    else:
        assert sorted(found.decoded.names) == sorted(names)
