"""kallsyms decoded from the dump's memory, against drgn 0.3.0, crash 9.0.2 and VMCOREINFO."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import built_folder, built_vmlinux

from kdumpkit.dump.open import open_dump
from kdumpkit.dump.vmcoreinfo import VmcoreInfo
from kdumpkit.kernel.kallsyms import (
    MAX_EXPANDED_BYTES,
    KallsymsError,
    decode_names,
    kallsyms,
    kallsyms_addresses,
    read_kallsyms,
)
from kdumpkit.kernel.x86_64 import address_space

#: VMCOREINFO symbols that kallsyms does not list: macros (swapper_pg_dir is
#: init_top_pgt, node_online_map is node_states[N_ONLINE]), a pointer's value
#: (mem_section) and the kallsyms tables themselves.
NOT_IN_KALLSYMS = {"swapper_pg_dir", "node_online_map", "mem_section"}


def test_matches_drgn_kallsyms(dump, fx61: Path) -> None:
    table = kallsyms(dump)
    assert table is kallsyms(dump)
    drgn = (fx61 / "drgn-0.3.0" / "without-vmlinux.txt").read_text()
    assert len(table) == int(re.search(r"^symbols: (\d+)$", drgn, re.M).group(1))
    found = re.findall(r"Symbol\(name='(\w+)', address=(0x[0-9a-f]+), size=(0x[0-9a-f]+)", drgn)
    assert len(found) >= 5
    for name, address, size in found:
        assert table.lookup(name) == int(address, 16), name
        if name in ("panic", "sysrq_handle_crash", "init_task", "__stop_BTF"):
            assert table.size(table.names.index(name)) == int(size, 16), name
    assert table.symbol_type("panic") == "T" and table.symbol_type("sysrq_handle_crash") == "t"


def test_matches_vmcoreinfo_symbols(dump) -> None:
    table = kallsyms(dump)
    checked = 0
    for key, value in dump.vmcoreinfo.typed().items():
        name = key[len("SYMBOL(") : -1] if key.startswith("SYMBOL(") else None
        if name and name not in NOT_IN_KALLSYMS and not name.startswith("kallsyms_"):
            assert table.lookup(name) == value, name
            checked += 1
    assert checked >= 5


def crash_bt_frames(fx61: Path) -> list[tuple[str, int]]:
    """(function, return address) of each frame of crash 9.0.2's ``bt`` on the fixture."""
    text = (fx61 / "crash-9.0.2" / "bt.txt").read_text()
    frames = [(name, int(pc, 16)) for name, pc in re.findall(r"\] (\S+) at ([0-9a-f]{16})", text)]
    assert len(frames) == 11
    return frames


def test_symbolizes_crash_backtrace(dump, fx61: Path) -> None:
    table = kallsyms(dump)
    for name, address in crash_bt_frames(fx61):
        symbol, offset = table.symbolize(address)
        assert symbol == name and 0 < offset < 0x1000


def test_direct_map_and_vmemmap_through_kallsyms(dump, elf61: Path) -> None:
    # Without ELF program headers the bases come from the kernel variables.
    space = address_space(dump)
    table = kallsyms(dump)
    assert space.read_u64(table.lookup("page_offset_base")) == space.page_offset_base
    assert space.read_u64(table.lookup("vmemmap_base")) == space.vmemmap_base
    expected = "ELF PT_LOAD" if dump.format == "elf" else "kallsyms"
    assert space.page_offset_source == expected


@pytest.mark.parametrize(
    ("symbol", "value", "message"),
    [
        ("kallsyms_num_syms", b"\xff\xff\xff\x7f", "kallsyms_num_syms is 2147483647"),
        ("kallsyms_token_index", b"\xff\xff" * 256, "kallsyms_token_index points"),
    ],
)
def test_corrupt_tables_are_one_line_errors(elf61: Path, symbol, value, message) -> None:
    from test_dmesg import PatchedDump

    from kdumpkit.kernel.kallsyms import load_kallsyms

    with open_dump(elf61) as base:
        dump = PatchedDump(base)
        space = address_space(dump)
        dump.patch(space.v2p(dump.vmcoreinfo.symbol(symbol)), value)
        with pytest.raises(KallsymsError, match=message) as exc:
            load_kallsyms(dump)
        assert "\n" not in str(exc.value)
        # The patched dump has no ELF segments and broken kallsyms: the page tables remain.
        assert space.page_offset_base == base.segments[1].vaddr - base.segments[1].paddr
        assert space.page_offset_source == "page tables"


def test_absolute_addresses_layout(kdump61: Path) -> None:
    """Without CONFIG_KALLSYMS_BASE_RELATIVE (before 6.11) VMCOREINFO gives a u64
    kallsyms_addresses table: served here from the dump's own decoded offsets, as they
    are (sorted, as scripts/kallsyms writes them) and reversed (sorted by the decoder)."""
    with open_dump(kdump61) as dump:
        space = address_space(dump)
        info = dump.vmcoreinfo
        count = space.read_u32(info.symbol("kallsyms_num_syms"))
        in_order = kallsyms_addresses(info, space.read, count)
        # scripts/kallsyms writes them sorted: the table's names are in name-table order.
        assert bool((in_order[1:] >= in_order[:-1]).all())
        fake_at = 0x1000  # not kernel memory: only the fake reader knows it
        text = re.sub(r"SYMBOL\(kallsyms_(offsets|relative_base)\)=\w+\n", "", info.text)
        absolute = VmcoreInfo.parse(f"{text}SYMBOL(kallsyms_addresses)={fake_at:x}\n".encode())
        expected = kallsyms(dump)
        for addresses in (in_order, in_order[::-1]):
            table = addresses.astype("<u8").tobytes()

            def read(address: int, size: int, table: bytes = table) -> bytes:
                return table[:size] if address == fake_at else space.read(address, size)

            decoded = read_kallsyms(absolute, read)
            # Python's stable sort of (name, type, address) in name-table order.
            rows = zip(expected.names, expected.types, addresses.tolist(), strict=True)
            names, types, values = zip(*sorted(rows, key=lambda row: row[2]), strict=True)
            assert decoded.names == list(names)
            assert decoded.addresses.tolist() == list(values)
            assert decoded.types.decode() == "".join(types)


def _tokens(*tokens: bytes) -> tuple[bytes, np.ndarray]:
    """A token table of ``tokens`` followed by single-letter tokens up to 256."""
    tokens = tokens + tuple(bytes([ord("A") + i % 26]) for i in range(256 - len(tokens)))
    offsets = np.cumsum([0] + [len(token) + 1 for token in tokens[:-1]])
    return b"".join(token + b"\0" for token in tokens), offsets.astype("<u2")


def test_two_byte_lengths() -> None:
    """Linux 6.1's big symbols: a length >= 128 takes two bytes, low 7 bits first."""
    table, index = _tokens(b"T", b"x", b"t", b"short")
    long_name = bytes([0]) + bytes([1]) * 299  # "T" then 299 "x": 300 tokens
    blob = bytes([0x80 | (300 & 0x7F), 300 >> 7]) + long_name + bytes([2, 2, 3])
    names, types = decode_names(blob, 2, table, index)
    assert names == ["x" * 299, "short"] and types == b"Tt"


def test_missing_tables_are_one_line_errors() -> None:
    info = VmcoreInfo.parse(b"OSRELEASE=5.15.0\nSYMBOL(kallsyms_names)=ffffffff81000000\n")
    with pytest.raises(KallsymsError, match="no kallsyms_num_syms, ") as exc:
        read_kallsyms(info, lambda address, size: bytes(size))
    assert "\n" not in str(exc.value) and "kallsyms_offsets" in str(exc.value)


def test_huge_expansion_is_refused() -> None:
    """Tokens of 60 kB each: the names would expand to gigabytes; refused up front."""
    table = b"y" * 60_000 + b"\0"
    index = np.zeros(256, dtype="<u2")
    blob = bytes([127] + [0] * 127) * 1000
    with pytest.raises(KallsymsError, match="expands to") as exc:
        decode_names(blob, 1000, table, index)
    assert "\n" not in str(exc.value) and 1000 * 127 * 60_000 > MAX_EXPANDED_BYTES


@settings(max_examples=150, deadline=None)
@given(
    names=st.binary(min_size=0, max_size=600),
    count=st.integers(1, 200),
    table=st.binary(min_size=0, max_size=400),
    index=st.binary(min_size=512, max_size=512),
)
def test_hostile_kallsyms_names_fail_cleanly(
    names: bytes, count: int, table: bytes, index: bytes
) -> None:
    """Random kallsyms_names/token tables: names decoded, or one KallsymsError line."""
    token_index = np.frombuffer(index, dtype="<u2") % 512
    try:
        decoded, letters = decode_names(names, count, table, token_index)
    except KallsymsError as exc:
        assert "\n" not in str(exc)
    else:
        assert len(decoded) == len(letters) == count


def test_place_relative_offsets_layout(kdump61: Path) -> None:
    """ "kallsyms: Get rid of kallsyms relative base" (Debian's 7.3): VMCOREINFO has
    kallsyms_offsets and no kallsyms_relative_base; entry i is the symbol's distance
    from &kallsyms_offsets[i].  Served here from the 6.1 dump's own addresses, encoded
    that way at a fake table address, and decoded back."""
    with open_dump(kdump61) as dump:
        space = address_space(dump)
        info = dump.vmcoreinfo
        count = space.read_u32(info.symbol("kallsyms_num_syms"))
        in_order = kallsyms_addresses(info, space.read, count)
        # 6.1's per-cpu symbols are offsets near 0, out of a PC32 entry's reach: moved
        # to __START_KERNEL_map + offset (still sorted, below the kernel's text).
        in_order = np.where(
            in_order < np.uint64(1 << 32), in_order + np.uint64(0xFFFFFFFF80000000), in_order
        )
        fake_at = 0xFFFFFFFF81000000 + 0x1000  # the table sits in the kernel image
        places = fake_at + 4 * np.arange(count, dtype=object)
        rel = [
            int(address) - place for address, place in zip(in_order.tolist(), places, strict=True)
        ]
        table = np.array(rel, dtype="<i4").tobytes()
        text = re.sub(r"SYMBOL\(kallsyms_(offsets|relative_base)\)=\w+\n", "", info.text)
        place_relative = VmcoreInfo.parse(f"{text}SYMBOL(kallsyms_offsets)={fake_at:x}\n".encode())

        def read(address: int, size: int) -> bytes:
            return table[:size] if address == fake_at else space.read(address, size)

        assert kallsyms_addresses(place_relative, read, count).tolist() == in_order.tolist()
        decoded = read_kallsyms(place_relative, read)
        assert decoded.names == kallsyms(dump).names
        assert decoded.addresses.tolist() == in_order.tolist()


def test_place_relative_offsets_on_73_dump() -> None:
    """On a real 7.3 kdump (no kallsyms_relative_base in VMCOREINFO), every symbol
    found once in both is where the -dbg vmlinux's .symtab, moved by KERNELOFFSET, puts it."""
    import drgn
    from drgn.helpers.linux.kallsyms import load_vmlinux_kallsyms

    from kdumpkit.debuginfo.symbols import load_elf_symtab

    vmcore = built_folder("7.3", "kdump-load", "vmcore.elf") / "vmcore.elf"
    vmlinux = built_vmlinux("7.3")
    with open_dump(vmcore) as dump:
        assert dump.vmcoreinfo.symbol("kallsyms_relative_base") is None
        table = kallsyms(dump)
        symtab = load_elf_symtab(vmlinux, dump.vmcoreinfo.kerneloffset)
    reference = drgn.Program()
    reference.set_core_dump(str(vmcore))
    index = load_vmlinux_kallsyms(reference)
    assert len(table) == len(index(reference, None, None, False)) > 150_000
    once = {name for name, seen in Counter(table.names).items() if seen == 1}
    compared = 0
    for name in table.names[::53]:
        if len(symtab.positions(name)) == 1 and name in once:
            assert symtab.address(name) == table.lookup(name), name
            compared += 1
    assert compared > 1000
