"""kallsyms decoded from the dump's memory, against drgn 0.3.0, crash 9.0.2 and VMCOREINFO."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kdumpkit.dump.open import open_dump
from kdumpkit.kernel.kallsyms import kallsyms
from kdumpkit.kernel.x86_64 import address_space

#: VMCOREINFO symbols that kallsyms does not list: macros (swapper_pg_dir is
#: init_top_pgt, node_online_map is node_states[N_ONLINE]), a pointer's value
#: (mem_section) and the kallsyms tables themselves.
NOT_IN_KALLSYMS = {"swapper_pg_dir", "node_online_map", "mem_section"}


@pytest.fixture(params=["elf61", "kdump61", "flat61"])
def dump(request: pytest.FixtureRequest):
    path: Path = request.getfixturevalue(request.param)
    if not path.exists():
        pytest.skip(f"{path} not present")
    with open_dump(path) as opened:
        yield opened


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


def test_symbolizes_crash_backtrace(dump, fx61: Path) -> None:
    table = kallsyms(dump)
    frames = re.findall(
        r"\] (\S+) at ([0-9a-f]{16})", (fx61 / "crash-9.0.2" / "bt.txt").read_text()
    )
    assert len(frames) == 11
    for name, address in frames:
        symbol, offset = table.symbolize(int(address, 16))
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

    from kdumpkit.kernel.kallsyms import KallsymsError, load_kallsyms

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
