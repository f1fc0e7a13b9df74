"""Symbols for drgn from the dump's kallsyms (vmlinux and modules), System.map, and the
globals table, on the real 6.1 dump."""

from __future__ import annotations

import re
import time
from pathlib import Path

import drgn
import numpy as np
import pytest

from kdumpkit.analyze.program import open_program
from kdumpkit.debuginfo.globals import GLOBAL_TYPES, MISSING_CONSTANTS
from kdumpkit.debuginfo.symbols import (
    KernelSymbols,
    SymbolError,
    load_system_map,
    load_vmcoreinfo_kallsyms,
)
from kdumpkit.dump.open import open_dump
from kdumpkit.dump.vmcoreinfo import VmcoreInfo
from kdumpkit.kernel.kallsyms import kallsyms


@pytest.fixture(scope="module")
def prog(kdump61: Path) -> drgn.Program:
    return open_program(kdump61)


def test_kallsyms_equal_the_kernel_layer_decoder(prog: drgn.Program, kdump61: Path) -> None:
    """The one decoder through drgn's memory (ours) and through kdumpkit.kernel's address
    space (capture's) gives the same table."""
    ours: KernelSymbols = prog.cache["kdumpkit.debuginfo"].symbols
    with open_dump(kdump61) as dump:
        theirs = kallsyms(dump)
    assert theirs is not None and len(ours) == len(theirs) == 87347
    assert sorted(zip(ours.names, ours.addresses.tolist(), strict=True)) == sorted(
        zip(theirs.names, theirs.addresses, strict=True)
    )


def test_symbols_match_drgn_native_kallsyms(prog: drgn.Program, fx61: Path) -> None:
    text = (fx61 / "drgn-0.3.0" / "without-vmlinux.txt").read_text()
    found = re.findall(
        r"Symbol\(name='(\w+)', address=(0x[0-9a-f]+), size=(0x[0-9a-f]+), "
        r"binding=<SymbolBinding\.(\w+)", text
    )  # fmt: skip
    assert len(found) >= 5
    for name, address, size, binding in found:
        symbol = prog.symbol(name)
        assert symbol.address == int(address, 16), name
        assert symbol.binding.name == binding, name
        if name in ("panic", "sysrq_handle_crash", "init_task", "__stop_BTF"):
            assert symbol.size == int(size, 16), name


def test_symbolizes_crash_backtrace(prog: drgn.Program, fx61: Path) -> None:
    from test_kernel_kallsyms import crash_bt_frames

    for name, address in crash_bt_frames(fx61):
        assert prog.symbol(address).name == name


def test_module_symbols_equal_crash_mod(prog: drgn.Program, fx61: Path) -> None:
    rows = [
        line.split() for line in (fx61 / "crash-9.0.2" / "mod.txt").read_text().splitlines()[1:]
    ]
    assert len(rows) == 11
    for address, name, base, _size, *_ in rows:
        symbol = prog.symbol(int(address, 16))
        assert (symbol.name, symbol.address) == ("__this_module", int(address, 16)), name
        assert prog.symbol(int(base, 16)).address >= int(base, 16)
    table = prog.cache["kdumpkit.debuginfo"].module_symbols.table
    assert table is not None and len(table) > 500


def _write_system_map(symbols: KernelSymbols, kaslr: int, path: Path) -> Path:
    """A System.map as the build writes it: link-time (unrelocated) addresses."""
    lines = []
    for name, address, letter in zip(
        symbols.names, symbols.addresses.tolist(), symbols.types, strict=True
    ):
        value = address - kaslr if address >= 0xFFFFFFFF80000000 else address
        lines.append(f"{value:016x} {chr(letter)} {name}\n")
    path.write_text("".join(lines))
    return path


def test_system_map_round_trip(prog: drgn.Program, tmp_path: Path) -> None:
    ours: KernelSymbols = prog.cache["kdumpkit.debuginfo"].symbols
    kaslr = prog.cache["kdumpkit.dump"].vmcoreinfo.kerneloffset
    loaded = load_system_map(_write_system_map(ours, kaslr, tmp_path / "System.map"), kaslr)
    assert loaded.names == ours.names
    assert (loaded.addresses == ours.addresses).all()


def test_proc_kallsyms_listing(prog: drgn.Program, tmp_path: Path) -> None:
    """/proc/kallsyms' format: runtime addresses, modules' symbols tagged and skipped;
    zeros (not root) and a garbled line are one-line errors."""
    from kdumpkit.debuginfo.symbols import load_proc_kallsyms

    ours: KernelSymbols = prog.cache["kdumpkit.debuginfo"].symbols
    rows = list(zip(ours.names, ours.addresses.tolist(), ours.types, strict=True))[-3000:]
    lines = [f"{address:016x} {chr(letter)} {name}\n" for name, address, letter in rows]
    lines.insert(10, "ffffffffc0a00000 t brd_probe\t[brd]\n")
    listing = tmp_path / "kallsyms"
    listing.write_text("".join(lines))
    loaded = load_proc_kallsyms(listing)
    assert loaded.source == "/proc/kallsyms"
    assert loaded.names == [name for name, _, _ in rows]
    assert loaded.addresses.tolist() == [address for _, address, _ in rows]
    zeros = tmp_path / "zeros"
    zeros.write_text("".join(f"{0:016x} T {name}\n" for name, _, _ in rows))
    garbled = tmp_path / "garbled"
    garbled.write_text("".join(lines[:2]) + "not-hex T x\n")
    for path, message in ((zeros, "run as root"), (garbled, "garbled:3: not an")):
        with pytest.raises(SymbolError, match=message) as info:
            load_proc_kallsyms(path)
        assert "\n" not in str(info.value)


def test_program_with_system_map(prog: drgn.Program, kdump61: Path, tmp_path: Path) -> None:
    """The pre-6.0 path: symbols from a System.map, types from the BTF in memory."""
    ours: KernelSymbols = prog.cache["kdumpkit.debuginfo"].symbols
    kaslr = prog.cache["kdumpkit.dump"].vmcoreinfo.kerneloffset
    system_map = _write_system_map(ours, kaslr, tmp_path / "System.map")
    with_map = open_program(kdump61, vmlinux=system_map)
    assert with_map.cache["kdumpkit.debuginfo"].symbols.source == "System.map"
    assert with_map.crashed_thread().tid == 134
    assert with_map["init_uts_ns"].name.release.string_() == b"6.1.0-56-cloud-amd64"
    assert per_cpu_curr(with_map, 1) == b"testbed_spinner"


def per_cpu_curr(program: drgn.Program, cpu: int) -> bytes:
    from drgn.helpers.linux.percpu import per_cpu

    return per_cpu(program["runqueues"], cpu).curr.comm.string_()


def _vmcoreinfo_with(vmcoreinfo: VmcoreInfo, **symbols: int) -> VmcoreInfo:
    text = vmcoreinfo.text
    for name, value in symbols.items():
        text = re.sub(rf"SYMBOL\({name}\)=\w+", f"SYMBOL({name})={value:x}", text)
    return VmcoreInfo.parse(text.encode())


def test_corrupt_kallsyms_is_one_line_error(prog: drgn.Program) -> None:
    vmcoreinfo = prog.cache["kdumpkit.dump"].vmcoreinfo
    names = vmcoreinfo.symbol("kallsyms_names")
    bad_count = _vmcoreinfo_with(vmcoreinfo, kallsyms_num_syms=names + 7)
    bad_names = _vmcoreinfo_with(
        vmcoreinfo, kallsyms_names=vmcoreinfo.symbol("kallsyms_token_table") - 64
    )
    missing = VmcoreInfo.parse(b"OSRELEASE=6.1.0\n")
    for broken in (bad_count, bad_names, missing):
        with pytest.raises(SymbolError) as info:
            load_vmcoreinfo_kallsyms(broken, prog.read)
        assert "\n" not in str(info.value)


def test_kallsyms_decode_time(prog: drgn.Program) -> None:
    vmcoreinfo = prog.cache["kdumpkit.dump"].vmcoreinfo
    load_vmcoreinfo_kallsyms(vmcoreinfo, prog.read)  # pages now cached
    start = time.process_time()
    table = load_vmcoreinfo_kallsyms(vmcoreinfo, prog.read)
    elapsed = time.process_time() - start
    assert len(table) == 87347
    assert elapsed < 0.5, f"decoding kallsyms took {elapsed:.3f} s"


# --- globals and constants ---------------------------------------------------------------


def test_every_hand_typed_global_fits(prog: drgn.Program) -> None:
    objects = prog.cache["kdumpkit.debuginfo"].objects
    assert objects.check_table() == {}
    present = [
        name for name in GLOBAL_TYPES if prog.cache["kdumpkit.debuginfo"].symbols.address(name)
    ]
    assert len(present) > 90
    for name in present:
        assert prog[name].address_ == prog.symbol(name).address, name


def test_hand_typed_globals_read_right(prog: drgn.Program, fx61: Path) -> None:
    vmcoreinfo = prog.cache["kdumpkit.dump"].vmcoreinfo
    # task_state_array: kallsyms spans 128 bytes, the array has 9 entries.
    states = [s.string_().decode()[0] for s in prog["task_state_array"]]
    assert "".join(states) == "RSDTtXZPI"
    assert prog["node_data"].type_.length == vmcoreinfo.length("node_data")
    assert abs(prog["tk_core"].timekeeper.xtime_sec.value_() - int(vmcoreinfo["CRASHTIME"])) <= 1
    assert prog["linux_banner"].string_().startswith(b"Linux version 6.1.0-56-cloud-amd64 ")
    # crash's sys: LOAD AVERAGE: 0.08, 0.02, 0.01 (11-bit fixed point, + FIXED_1/200, truncated).
    loads = []
    for value in prog["avenrun"]:
        rounded = value.value_() + 2048 // 200
        loads.append(f"{rounded >> 11}.{((rounded & 2047) * 100) >> 11:02d}")
    sys_text = (fx61 / "crash-9.0.2" / "sys.txt").read_text()
    assert f"LOAD AVERAGE: {', '.join(loads)}" in sys_text
    assert prog["nr_cpu_ids"].value_() == 2
    assert prog["vm_zone_stat"].type_.length == prog["NR_VM_ZONE_STAT_ITEMS"].value_()


def test_constants(prog: drgn.Program) -> None:
    counters = prog.type("struct mm_rss_stat").member("count").type.length
    assert prog["NR_MM_COUNTERS"].value_() == counters == MISSING_CONSTANTS["NR_MM_COUNTERS"][0]
    for name, (value, _) in MISSING_CONSTANTS.items():
        assert prog[name].value_() == value, name
    assert prog["PIDTYPE_PID"].value_() == 0
    assert prog.constant("PIDTYPE_TGID").value_() == 1
    # Functions are typed from BTF FUNC records.
    panic = prog["panic"]
    assert panic.type_.kind == drgn.TypeKind.FUNCTION and panic.type_.is_variadic
    assert panic.address_ == prog.symbol("panic").address


def test_module_types_from_split_btf(prog: drgn.Program) -> None:
    brd = prog.type("struct brd_device")
    assert [m.name for m in brd.members][:2] == ["brd_number", "brd_disk"]
    loaded = prog.cache["kdumpkit.debuginfo"].module_btfs
    assert sorted(m.name for m in loaded) == sorted(
        ["dummy", "brd", "pvpanic_mmio", "pvpanic", "qemu_fw_cfg", "virtio_blk", "virtio_pci",
         "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio", "virtio_ring"]
    )  # fmt: skip


def test_globals_table_types_exist_in_the_host_kernel() -> None:
    """The table against a second, newer kernel (the host's, when its BTF is readable):
    the declared types exist there too, but for structs its config leaves out."""
    from kdumpkit.debuginfo.btf import Btf
    from kdumpkit.debuginfo.btf_types import BtfTypes

    try:
        blob = Path("/sys/kernel/btf/vmlinux").read_bytes()
    except OSError:
        pytest.skip("the host kernel's BTF is not readable")
    host = drgn.Program(drgn.Platform(drgn.Architecture.X86_64))
    types = BtfTypes(host, Btf(blob))
    host.register_type_finder("btf", types.type_finder, enable_index=0)
    unresolved = []
    for name, entry in GLOBAL_TYPES.items():
        if not entry.spellings:
            continue
        found = False
        for spelling in entry.spellings:
            try:
                host.type(spelling)
                found = True
            except LookupError:
                pass
        if not found:
            unresolved.append(name)
    # Config-dependent on the host (e.g. kexec_crash_image without CONFIG_KEXEC_CORE).
    assert len(unresolved) <= 4, unresolved


def test_elf_symtab_equals_kallsyms(prog: drgn.Program) -> None:
    """A vmlinux's .symtab, relocated by KERNELOFFSET, gives kallsyms' addresses."""
    import os

    from kdumpkit.debuginfo.symbols import load_elf_symtab

    release = "6.1.0-56-cloud-amd64"
    cache = Path(
        os.environ.get("KDUMPKIT_CACHE", Path(__file__).resolve().parent.parent / ".cache")
    )
    vmlinux = cache / "oracle" / "kernels" / release / "usr/lib/debug/boot" / f"vmlinux-{release}"
    if not vmlinux.is_file():
        pytest.skip(f"{vmlinux} is not cached")
    kallsyms_table: KernelSymbols = prog.cache["kdumpkit.debuginfo"].symbols
    kaslr = prog.cache["kdumpkit.dump"].vmcoreinfo.kerneloffset
    symtab = load_elf_symtab(vmlinux, kaslr)
    compared = 0
    for name in kallsyms_table.names[::97]:
        if len(kallsyms_table.positions(name)) == 1 and len(symtab.positions(name)) == 1:
            assert symtab.address(name) == kallsyms_table.address(name), name
            compared += 1
    assert compared > 500


def test_offsets_and_direct_map_are_not_symbolized(prog: drgn.Program) -> None:
    """Per-cpu symbols are offsets, not addresses: NULL is not fixed_percpu_data and no
    direct-map pointer becomes __per_cpu_end+<huge> (drgn with DWARF shows neither)."""
    runqueues = prog.symbol("runqueues")
    assert runqueues.address < 1 << 32  # found by name, with its per-cpu offset
    task = prog["init_task"].tasks.next.value_()  # a direct-map (slab) pointer
    for address in (0, runqueues.address, task):
        with pytest.raises(LookupError):
            prog.symbol(address)
    assert "__per_cpu_end" not in str(prog["init_task"].tasks)


def test_name_lookups_find_every_position(prog: drgn.Program) -> None:
    """Lookups by name (a search among the names of the same length) give every
    position of a name, duplicated names included, as a scan of the list does."""
    symbols = prog.cache["kdumpkit.debuginfo"].symbols
    fresh = KernelSymbols(list(symbols.names), symbols.addresses.copy(), symbols.types)
    every: dict[str, list[int]] = {}
    for position, name in enumerate(fresh.names):
        every.setdefault(name, []).append(position)
    shared = [name for name, found in every.items() if len(found) > 1]
    assert len(shared) > 500  # a 6.1 kernel has ~900 names used by several symbols
    for name in [*shared, *list(every)[::97], "init_task", "__start_BTF", "_stext"]:
        assert fresh.positions(name) == every[name], name
        assert fresh.address(name) == int(fresh.addresses[every[name][0]]), name
    for missing in ("no_such_symbol", "", "a\nb", "init_tas", "nit_task", "_task"):
        assert fresh.positions(missing) == [] and fresh.address(missing) is None, missing
    # names of one length, one after another: a match across two of them is not a name
    two = KernelSymbols(["ab", "cd", "bc", "x"], np.array([1, 2, 3, 4], dtype=np.uint64), b"TTTT")
    assert two.positions("bc") == [2] and two.positions("cd") == [1]
