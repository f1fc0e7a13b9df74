"""Damaged analysis inputs, structure by structure (hypothesis): VMCOREINFO lines, the BTF
blob, the kallsyms tables, ORC entries, page-table entries, task lists that loop, pages
excluded from the dump.  Each must give an answer or one KdumpkitError line -- never
another exception, a hang or unbounded memory.  The real 6.1 dump is damaged in memory
(its page reads patched), so no test writes a file except the CLI ones on kdump copies.
"""

from __future__ import annotations

import ctypes
import re
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import drgn
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdumpkit.analyze import guard
from kdumpkit.analyze.program import (
    PhysicalMemory,
    checked_vmcoreinfo,
    notes_core,
    open_program,
    strtoull,
)
from kdumpkit.analyze.session import Session
from kdumpkit.cli.main import main
from kdumpkit.debuginfo.btf import Btf, BtfError, check_blob_header
from kdumpkit.debuginfo.btf_types import BtfTypes
from kdumpkit.debuginfo.symbols import SymbolError, load_vmcoreinfo_kallsyms
from kdumpkit.dump.errors import DumpError, DumpFormatError
from kdumpkit.dump.notes import Note, encode_notes
from kdumpkit.dump.vmcoreinfo import VmcoreInfo
from kdumpkit.errors import KdumpkitError
from kdumpkit.kernel.kallsyms import KallsymsError, read_kallsyms
from kdumpkit.kernel.x86_64 import X86_64AddressSpace, address_space

FAST = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
FEW = settings(FAST, max_examples=25)


@pytest.fixture(scope="module")
def prog(kdump61: Path) -> drgn.Program:
    return open_program(kdump61)


@pytest.fixture(scope="module")
def vmcoreinfo_text(fx61: Path) -> bytes:
    return (fx61 / "vmcoreinfo.txt").read_bytes()


def _fake_dump(page_size: int = 4096, release: str = "") -> SimpleNamespace:
    header = SimpleNamespace(utsname={"release": release} if release else {})
    return SimpleNamespace(name="fuzz", page_size=page_size, header=header)


# --- VMCOREINFO lines ------------------------------------------------------------------


libc = ctypes.CDLL(None, use_errno=True)
libc.strtoull.restype = ctypes.c_ulonglong
libc.strtoull.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int]


def _c_strtoull(text: bytes, base: int) -> int | None:
    """libc's strtoull over the whole value, as drgn's parse_vmcoreinfo_u64 uses it."""
    buffer = ctypes.create_string_buffer(text)
    end = ctypes.c_char_p()
    ctypes.set_errno(0)
    value = libc.strtoull(buffer, ctypes.byref(end), base)
    consumed = ctypes.cast(end, ctypes.c_void_p).value - ctypes.addressof(buffer)  # type: ignore[operator]
    if ctypes.get_errno() or consumed == 0 or consumed != len(text):
        return None
    return int(value)


@FAST
@given(
    text=st.one_of(
        st.binary(max_size=24),
        st.from_regex(rb"\A[ +-]?(0[xX])?[0-9a-fA-F]{0,20}\Z"),
        st.from_regex(rb"\A-?[0-9]{15,25}\Z"),
    ),
    base=st.sampled_from([0, 16]),
)
def test_strtoull_is_libc(text: bytes, base: int) -> None:
    """Our check of drgn's numbers accepts exactly what libc's strtoull accepts."""
    if b"\0" in text:
        return  # a NUL ends a C string: checked_vmcoreinfo drops such lines first
    assert strtoull(text, base) == _c_strtoull(text, base)


def _lines(text: bytes) -> list[bytes]:
    return [line for line in text.split(b"\n") if b"=" in line]


@FAST
@given(data=st.data())
def test_damaged_vmcoreinfo_line_never_breaks_drgn(
    vmcoreinfo_text: bytes, data: st.DataObject
) -> None:
    """One line damaged anyhow (its value, its key, a NUL, a cut): checked_vmcoreinfo
    gives text drgn accepts, with a note naming the line, or one DumpFormatError line
    (only for swapper_pg_dir, without which no address translates)."""
    lines = _lines(vmcoreinfo_text)
    hot = [
        i
        for i, line in enumerate(lines)
        if re.match(rb"(BUILD-ID|OSRELEASE|PAGESIZE|KERNELOFF|SYMBOL\(swapper|NUMBER\()", line)
    ]
    index = data.draw(st.one_of(st.sampled_from(hot), st.integers(0, len(lines) - 1)))
    key, _, value = lines[index].partition(b"=")
    how = data.draw(st.sampled_from(["value", "key", "drop", "nul", "append"]))
    if how == "value":
        lines[index] = (
            key + b"=" + data.draw(st.binary(max_size=80).filter(lambda b: b"\n" not in b))
        )
    elif how == "key":
        lines[index] = (
            data.draw(st.binary(max_size=30).filter(lambda b: b"\n" not in b)) + b"=" + value
        )
    elif how == "drop":
        del lines[index]
    elif how == "nul":
        at = data.draw(st.integers(0, len(lines[index])))
        lines[index] = lines[index][:at] + b"\0" + lines[index][at:]
    else:
        lines.insert(index, data.draw(st.binary(max_size=60).filter(lambda b: b"\n" not in b)))
    raw = b"\n".join(lines) + b"\n" + bytes(data.draw(st.integers(0, 8)))
    try:
        text, damage = checked_vmcoreinfo(raw, _fake_dump())  # type: ignore[arg-type]
    except DumpFormatError as exc:
        assert "swapper_pg_dir" in str(exc) and "\n" not in str(exc)
        return
    for found in damage:
        assert found.part.startswith("VMCOREINFO ") and "\n" not in str(found)
    _, note_data = encode_notes([Note("VMCOREINFO", 0, text)])
    program = drgn.Program()
    program.set_core_dump(notes_core(note_data))  # drgn takes it: no BadDataError
    assert VmcoreInfo.parse(text).osrelease


def test_bad_build_id_is_dropped_with_a_warning(vmcoreinfo_text: bytes) -> None:
    raw = re.sub(rb"BUILD-ID=\w+", b"BUILD-ID=zz!!fad5", vmcoreinfo_text)
    text, damage = checked_vmcoreinfo(raw, _fake_dump())  # type: ignore[arg-type]
    assert b"BUILD-ID" not in text and b"OSRELEASE=6.1.0-56-cloud-amd64" in text
    assert [str(d) for d in damage] == [
        "VMCOREINFO BUILD-ID: 'zz!!fad5' is not a build ID; line ignored"
    ]


def test_damaged_osrelease_and_pagesize_are_replaced(vmcoreinfo_text: bytes) -> None:
    raw = vmcoreinfo_text.replace(b"OSRELEASE=6.1", b"OSRELEASE=\x006.1")
    raw = re.sub(rb"PAGESIZE=\d+", b"PAGESIZE=4095", raw)
    text, damage = checked_vmcoreinfo(raw, _fake_dump(release="6.1.0-header"))  # type: ignore[arg-type]
    info = VmcoreInfo.parse(text)
    assert info.osrelease == "6.1.0-header" and info.page_size == 4096
    assert [d.part for d in damage] == ["VMCOREINFO OSRELEASE", "VMCOREINFO PAGESIZE"]
    assert "the release from the dump header used" in damage[0].detail


# --- the BTF blob ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def btf_blob(prog: drgn.Program) -> bytes:
    start = prog.symbol("__start_BTF").address
    return prog.read(start, prog.symbol("__stop_BTF").address - start)


HEADER_FIELDS = ("hdr_len", "type_off", "type_len", "str_off", "str_len")


@FEW
@given(data=st.data())
def test_btf_header_and_records_damaged(btf_blob: bytes, data: st.DataObject) -> None:
    """The vmlinux BTF with its header fields or type records' info words overwritten:
    a Btf that builds types, or one BtfError line."""
    blob = bytearray(btf_blob)
    hdr_len, type_off, type_len = struct.unpack_from("<III", btf_blob, 4)
    for _ in range(data.draw(st.integers(1, 3))):
        if data.draw(st.booleans()):
            field = data.draw(st.integers(0, len(HEADER_FIELDS) - 1))
            value = data.draw(st.one_of(st.integers(0, 2**32 - 1), st.integers(0, 64)))
            struct.pack_into("<I", blob, 4 + 4 * field, value)
        else:
            # A word of the type records (name offsets, info words: kind, vlen,
            # kind_flag; sizes, type ids, member offsets), near the start or anywhere.
            words = type_len // 4
            word = data.draw(st.one_of(st.integers(0, 3000), st.integers(0, words - 1)))
            value = data.draw(st.one_of(st.integers(0, 2**32 - 1), st.integers(0, 0x1F << 24)))
            struct.pack_into("<I", blob, hdr_len + type_off + 4 * word, value)
    start = time.monotonic()
    try:
        check_blob_header(bytes(blob))
        btf = Btf(bytes(blob), name="fuzz")
        types = BtfTypes(drgn.Program(drgn.Platform(drgn.Architecture.X86_64)), btf)
        for name in ("task_struct", "list_head", "pt_regs", "mm_struct"):
            for type_id in btf.ids_by_name(name)[:2]:
                built = types.type(btf, type_id)
                if built.kind in (drgn.TypeKind.STRUCT, drgn.TypeKind.UNION):
                    for member in built.members[:50]:
                        member.type  # noqa: B018 - resolves the lazy member
    except (BtfError, drgn.FaultError) as exc:
        assert "\n" not in str(exc)
    assert time.monotonic() - start < 20


# --- the kallsyms tables -------------------------------------------------------------------


@pytest.fixture(scope="module")
def kallsyms_memory(prog: drgn.Program) -> tuple[VmcoreInfo, dict[int, bytes]]:
    """The four kallsyms tables' bytes (and the offsets), keyed by their address."""
    dump = prog.cache["kdumpkit.dump"]
    info = dump.vmcoreinfo
    reads: dict[tuple[int, int], bytes] = {}

    def read(address: int, size: int) -> bytes:
        reads[address, size] = prog.read(address, size)
        return reads[address, size]

    read_kallsyms(info, read)
    return info, {address: data for (address, _), data in reads.items()}


@settings(FAST, max_examples=30)
@given(data=st.data())
def test_kallsyms_tables_damaged(
    kallsyms_memory: tuple[VmcoreInfo, dict[int, bytes]], data: st.DataObject
) -> None:
    """Bytes of the real tables (count, names, token table and index, offsets) overwritten:
    symbols, or one SymbolError line, in bounded time."""
    info, tables = kallsyms_memory
    damaged = {address: bytearray(blob) for address, blob in tables.items()}
    addresses = sorted(damaged)
    for _ in range(data.draw(st.integers(1, 6))):
        blob = damaged[data.draw(st.sampled_from(addresses))]
        at = data.draw(st.integers(0, min(len(blob), 4096) - 1))
        blob[at] = data.draw(st.integers(0, 255))

    def read(address: int, size: int) -> bytes:
        for start, blob in damaged.items():
            if start <= address and address + size <= start + len(blob):
                return bytes(blob[address - start : address - start + size])
        raise drgn.FaultError("not in the test's tables", address)

    start = time.monotonic()
    try:
        symbols = load_vmcoreinfo_kallsyms(info, read)
    except SymbolError as exc:
        assert "\n" not in str(exc)
    except drgn.FaultError:
        pass  # a size read from the tables points past them: the loader names it
    else:
        assert len(symbols.names) > 0
    assert time.monotonic() - start < 20


def test_kallsyms_count_huge_is_one_line(
    kallsyms_memory: tuple[VmcoreInfo, dict[int, bytes]],
) -> None:
    info, tables = kallsyms_memory
    count_at = info.symbol("kallsyms_num_syms")

    def read(address: int, size: int) -> bytes:
        if address == count_at:
            return b"\xff\xff\xff\x7f"[:size]
        return tables[address][:size]

    with pytest.raises(KallsymsError, match="kallsyms_num_syms is 2147483647"):
        read_kallsyms(info, read)


# --- memory damaged under a whole program ----------------------------------------------------


def _damaged_program(path: Path, patches: dict[int, bytes]) -> drgn.Program:
    """A fresh program whose page reads from now on have some physical bytes replaced
    (what it reads lazily -- ORC tables, stacks, tasks -- comes damaged)."""
    damaged = open_program(path)
    patch = _patched(damaged, patches)
    next(patch)
    damaged.cache["test.patch"] = patch  # a generator collected would undo the patch
    return damaged


def _patched(prog: drgn.Program, patches: dict[int, bytes]) -> Iterator[None]:
    """Patch an opened program's page reads until the generator is closed."""
    memory: PhysicalMemory = prog.cache["kdumpkit.memory"]
    original = memory._read_page
    memory._cache.clear()

    def read_page(pfn: int) -> bytes:
        page = bytearray(original(pfn))
        base = pfn * memory.page_size
        for address, data in patches.items():
            if base <= address < base + memory.page_size:
                offset = address - base
                page[offset : offset + len(data)] = data[: memory.page_size - offset]
        return bytes(page)

    memory._read_page = read_page  # type: ignore[method-assign]
    try:
        yield
    finally:
        memory._read_page = original  # type: ignore[method-assign]
        memory._cache.clear()


@pytest.fixture(scope="module")
def task_list(prog: drgn.Program) -> list[tuple[int, int]]:
    """(task address, physical address of its tasks.next) of each task in the list."""
    from drgn.helpers.linux.pid import for_each_task

    space = address_space(prog.cache["kdumpkit.dump"])
    offset = drgn.offsetof(prog.type("struct task_struct"), "tasks")
    return [(task.value_(), space.v2p(task.value_() + offset)) for task in for_each_task(prog)]


@settings(FAST, max_examples=60)
@given(data=st.data())
def test_task_list_that_loops_ends(
    prog: drgn.Program, task_list: list[tuple[int, int]], data: st.DataObject
) -> None:
    """A task's tasks.next pointed back into the list (a loop that misses the head), or
    anywhere: the task walks (guard.tasks, ps's) end, each task at most once."""
    from kdumpkit.analyze.facts.tasks import for_each_task_with_idle

    offset = drgn.offsetof(prog.type("struct task_struct"), "tasks")
    index = data.draw(st.integers(0, len(task_list) - 1))
    target = data.draw(
        st.one_of(
            st.sampled_from([task + offset for task, _ in task_list[: index + 1]]),
            st.integers(0, 2**64 - 1),
        )
    )
    patches = {task_list[index][1]: struct.pack("<Q", target)}
    patch = _patched(prog, patches)
    next(patch)
    try:
        prog.cache.pop(guard.CACHE_KEY, None)
        seen = [task.value_() for task in guard.tasks(prog)]
        assert len(seen) == len(set(seen)) <= len(task_list) + 1
        listed = [task.value_() for task in for_each_task_with_idle(prog)]
        assert len(listed) == len(set(listed)) <= len(task_list) + 4
    finally:
        patch.close()


def test_task_list_loop_is_noted(prog: drgn.Program, task_list: list[tuple[int, int]]) -> None:
    offset = drgn.offsetof(prog.type("struct task_struct"), "tasks")
    patch = _patched(prog, {task_list[20][1]: struct.pack("<Q", task_list[5][0] + offset)})
    next(patch)
    try:
        prog.cache.pop(guard.CACHE_KEY, None)
        seen = list(guard.tasks(prog))
        assert len(seen) == 21
        (note,) = guard.damage_notes(prog)
        assert note.part == "task list" and "loops back" in note.detail
    finally:
        patch.close()
        prog.cache.pop(guard.CACHE_KEY, None)


@FAST
@given(data=st.data())
def test_page_table_entries_damaged(prog: drgn.Program, data: st.DataObject) -> None:
    """An entry on the walk of a kernel address overwritten at any level: the address
    translates or one TranslationError line; the walk never loops."""
    dump = prog.cache["kdumpkit.dump"]
    space = X86_64AddressSpace(dump)
    vaddr = data.draw(
        st.sampled_from(
            [
                prog["init_task"].address_,
                prog["init_task"].stack.value_(),
                prog.symbol("__start_BTF").address,
                prog["runqueues"].address_,
            ]
        )
    )
    level = data.draw(st.integers(0, 3))
    entry = data.draw(
        st.one_of(
            st.integers(0, 2**64 - 1),
            st.sampled_from([0, 1, 0x81, 0xE3, space.pgd_paddr | 0x63, (1 << 52) - 1 | 1]),
        )
    )
    original = space._table
    path: list[int] = []

    def table(paddr: int) -> tuple[int, ...]:
        rows = list(original(paddr))
        depth = len(path)
        path.append(paddr)
        if depth == level:
            rows[(vaddr >> (39 - 9 * depth)) & 511] = entry
        return tuple(rows)

    space._table = table  # type: ignore[method-assign]
    try:
        space.walk(vaddr)
    except DumpError as exc:
        assert "\n" not in str(exc)
    assert len(path) <= 4


# --- ORC entries ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def orc_entries(prog: drgn.Program) -> list[int]:
    """Physical addresses of the ORC entries that unwind the panic task's frames."""
    import numpy as np

    from kdumpkit.debuginfo.orc import load_vmlinux_orc

    table = load_vmlinux_orc(prog)
    table = table.full() if hasattr(table, "full") else table
    space = address_space(prog.cache["kdumpkit.dump"])
    start = prog.symbol("__start_orc_unwind").address
    out = []
    for text in re.findall(r" at ([0-9a-f]{16})", Session(prog).run_to_text("bt"))[1:]:
        pc = int(text, 16) - 1  # a return address: its call is the byte before
        if table.covers(pc):
            index = int(np.searchsorted(table.ips, np.uint64(pc), side="right")) - 1
            out.append(space.v2p(start + 6 * index))
    assert len(out) >= 5
    return out


@settings(FEW, max_examples=12)
@given(data=st.data())
def test_orc_entries_damaged(kdump61: Path, orc_entries: list[int], data: st.DataObject) -> None:
    """ORC entries of the panic task's frames overwritten (offsets, registers, types):
    bt prints frames up to where unwinding stops, or one error line; never hangs."""
    patches = {}
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.sampled_from(orc_entries))
        patches[at] = struct.pack(
            "<hhH",
            data.draw(st.integers(-(2**15), 2**15 - 1)),
            data.draw(st.integers(-(2**15), 2**15 - 1)),
            data.draw(st.integers(0, 2**16 - 1)),
        )
    damaged = _damaged_program(kdump61, patches)
    start = time.monotonic()
    text = Session(damaged).run_to_text("bt")
    assert time.monotonic() - start < 20
    assert text.startswith("PID: 134") or text.startswith("bt: "), text[:200]
    assert text.count("\n #") <= 200


# --- pages excluded from the dump ---------------------------------------------------------------


@pytest.fixture(scope="module")
def excluded_pfn(prog: drgn.Program) -> int:
    import numpy as np

    dump = prog.cache["kdumpkit.dump"]
    excluded = np.flatnonzero(dump.ram_bitmap() & ~dump.present_bitmap())
    return int(excluded[len(excluded) // 2])


def test_zero_excluded_reads_zeros_and_counts_them(kdump61: Path, excluded_pfn: int) -> None:
    plain = open_program(kdump61)
    with pytest.raises(drgn.FaultError, match="excluded"):
        plain.read(excluded_pfn * 4096, 8, True)
    zeroed = open_program(kdump61, zero_excluded=True)
    assert zeroed.read(excluded_pfn * 4096 + 8, 16, True) == bytes(16)
    assert zeroed.cache["kdumpkit.dump"].zero_filled == {excluded_pfn}
    with pytest.raises(drgn.FaultError, match=r"hole|segment"):
        zeroed.read(zeroed.cache["kdumpkit.dump"].max_pfn * 4096 + 4096, 8, True)


def test_zero_excluded_cli_marks_its_output(
    kdump61: Path, excluded_pfn: int, capsys: pytest.CaptureFixture[str]
) -> None:
    command = f"rd -p {excluded_pfn * 4096:x} 2"
    assert main(["crash", str(kdump61), "-c", command]) == 1
    assert capsys.readouterr().err.startswith("rd: ")
    assert main(["crash", str(kdump61), "--zero-excluded", "-c", command]) == 0
    out, err = capsys.readouterr()
    assert "0000000000000000 0000000000000000" in out
    assert err.splitlines() == [
        "kdumpkit crash: warning: --zero-excluded: pages excluded from the dump read as zeros; "
        "values read from them are not the kernel's",
        f"kdumpkit crash: warning: --zero-excluded: 1 excluded pages were read as zeros "
        f"(pfn {excluded_pfn:#x})",
    ]


# --- the CLI on damaged copies of the kdump file ------------------------------------------------


def _kdump_copy(kdump61: Path, tmp_path: Path, damage: dict[int, bytes]) -> Path:
    data = bytearray(kdump61.read_bytes())
    for at, patch in damage.items():
        data[at : at + len(patch)] = patch
    out = tmp_path / "damaged.kdump"
    out.write_bytes(data)
    return out


def _page_data(prog: drgn.Program, vaddr: int) -> tuple[int, int]:
    """(file offset, size) of the compressed page holding kernel address ``vaddr``."""
    dump = prog.cache["kdumpkit.dump"]
    paddr = address_space(dump).v2p(vaddr)
    _, offset, size, _ = dump._descriptor(paddr // dump.page_size)
    return offset, size


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def damaged_copy(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for leftover in tmp_path.iterdir():
        leftover.unlink()


def test_bad_build_id_crash_and_report_work(
    kdump61: Path, damaged_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's traceback: a corrupted BUILD-ID line; now a warning and the answer."""
    data = kdump61.read_bytes()
    damage = {at.start() + 9: b"zz!!" for at in re.finditer(rb"BUILD-ID=", data[: 1 << 20])}
    path = _kdump_copy(kdump61, damaged_copy, damage)
    status, out, err = _run(["crash", str(path), "-c", "bt"], capsys)
    assert status == 0 and out.startswith("PID: 134")
    assert (
        err.startswith("kdumpkit crash: warning: VMCOREINFO BUILD-ID: 'zz!!")
        and err.count("\n") == 1
    )
    status, out, err = _run(["report", str(path)], capsys)
    assert status == 0 and "sysrq triggered crash" in out and "BUILD-ID" in err


def test_damaged_btf_page_report_has_the_log(
    prog: drgn.Program, kdump61: Path, damaged_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A disk error in the page holding the start of the BTF blob: no types, so crash
    names the damage in one line; report still gives the log and the panic line."""
    offset, size = _page_data(prog, prog.symbol("__start_BTF").address)
    path = _kdump_copy(kdump61, damaged_copy, {offset: bytes(size)})
    status, out, err = _run(["crash", str(path), "-c", "bt"], capsys)
    assert status == 2 and err.count("\n") == 1 and "vmlinux BTF" in err
    status, out, err = _run(["report", str(path)], capsys)
    assert status == 0
    assert "panic: Kernel panic - not syncing: sysrq triggered crash" in out
    assert "TESTBED marker" in out or "</TASK>" in out
    assert err.count("\n") == 1 and "the report holds the log only" in err
    status, out, err = _run(["dmesg", str(path)], capsys)
    assert status == 0 and "sysrq triggered crash" in out


def test_damaged_task_struct_page_ps_lists_the_others(
    prog: drgn.Program, kdump61: Path, damaged_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """testbed_fifo's task_struct in a page that does not decompress: ps lists every
    other task, bt of the panic task is whole."""
    from drgn.helpers.linux.pid import find_task

    fifo = find_task(prog, 128)
    offset, size = _page_data(prog, fifo.value_())
    path = _kdump_copy(kdump61, damaged_copy, {offset: bytes(size)})
    _status, out, err = _run(["crash", str(path), "-c", "ps", "-c", "bt"], capsys)
    assert "testbed_fifo" not in out and "testbed_crasher" in out and "testbed_sleeper" in out
    assert " #9 [" in out and "Traceback" not in err


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.9])
def test_kdump_cut_short(
    kdump61: Path, damaged_copy: Path, fraction: float, capsys: pytest.CaptureFixture[str]
) -> None:
    """A kdump file cut short (a capture killed half-way, a copy that ran out of disk):
    in its bitmaps, one line naming the truncation; near its end, the report of what is
    left with what could not be read listed."""
    data = kdump61.read_bytes()
    path = damaged_copy / "cut.kdump"
    path.write_bytes(data[: int(len(data) * fraction)])
    for verb in ("info", "dmesg", "report"):
        status, out, err = _run([verb, str(path)], capsys)
        if status == 2:
            assert err.count("\n") == 1 and ("truncated" in err or "past EOF" in err), err
        else:
            assert status == 0 and "Traceback" not in err
    if fraction >= 0.9:
        status, out, err = _run(["report", str(path)], capsys)
        assert status == 0 and "sysrq triggered crash" in out and "Could not read:" in out


def test_unexpected_error_is_one_line(
    kdump61: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI's last resort: a bug's exception is one line saying where (exit 2);
    KDUMPKIT_DEBUG=1 lets the traceback through."""
    from kdumpkit.analyze import report

    def broken(prog: drgn.Program) -> None:
        raise TypeError("boom")

    monkeypatch.setattr(report, "gather_report", broken)
    status, _out, err = _run(["report", str(kdump61)], capsys)
    assert status == 2 and err.startswith("kdumpkit report: internal error: TypeError: boom at ")
    assert err.count("\n") == 1
    monkeypatch.setenv("KDUMPKIT_DEBUG", "1")
    with pytest.raises(TypeError):
        main(["report", str(kdump61)])


def test_errors_share_one_root() -> None:
    from kdumpkit.config import ConfigError
    from kdumpkit.service.errors import ServiceError

    for error in (DumpError, ConfigError, ServiceError, guard.ListLoopError):
        assert issubclass(error, KdumpkitError)


def test_bounded_stops_loops_and_long_lists() -> None:
    nodes = [0x10, 0x20, 0x30, 0x20, 0x30]
    with pytest.raises(guard.ListLoopError, match="loops back to 0x20 after 3 entries"):
        list(guard.bounded(iter(nodes), "list", key=lambda n: n))
    with pytest.raises(guard.ListLoopError, match="more than 2 entries"):
        list(guard.bounded(iter(range(5)), "list", limit=2))


def test_partial_notes_and_defaults(prog: drgn.Program) -> None:
    prog.cache.pop(guard.CACHE_KEY, None)

    def fault() -> int:
        raise drgn.FaultError("page not in dump (excluded)", 0x1000)

    assert guard.partial(prog, "modules", fault, -1) == -1
    assert [str(d) for d in guard.damage_notes(prog)] == [
        "modules: skipped (page not in dump (excluded) at 0x1000)"
    ]
    with pytest.raises(ZeroDivisionError):
        guard.partial(prog, "bug", lambda: 1 // 0, 0)
    prog.cache.pop(guard.CACHE_KEY, None)


def test_orc_entry_damaged_ends_the_backtrace_early(kdump61: Path, orc_entries: list[int]) -> None:
    """The ORC entry of the call in __handle_sysrq (frame #4) made to point 8 KiB up the
    stack: bt ends at that frame, the frames before it unchanged."""
    clean = Session(open_program(kdump61)).run_to_text("bt")
    damaged = _damaged_program(kdump61, {orc_entries[3]: struct.pack("<hhH", 0x2000, 0, 5)})
    text = Session(damaged).run_to_text("bt")
    assert text.splitlines() == clean.splitlines()[:6]
    assert text.splitlines()[-1].startswith(" #4 [") and "__handle_sysrq" in text


def test_module_list_that_loops_ends_with_a_note(kdump61: Path) -> None:
    """The fourth module's list.next pointed back at the second: drgn's own walk (behind
    for_each_module, mod, report) would go round for ever; it stops after four modules
    and the damage is named."""
    from drgn.helpers.linux.module import for_each_module

    from kdumpkit.analyze.report import gather_report

    clean = open_program(kdump61)
    space = address_space(clean.cache["kdumpkit.dump"])
    modules = [module.value_() for module in for_each_module(clean)]
    offset = drgn.offsetof(clean.type("struct module"), "list")
    damaged = _damaged_program(
        kdump61, {space.v2p(modules[3] + offset): struct.pack("<Q", modules[1] + offset)}
    )
    start = time.monotonic()
    assert len(Session(damaged).run_to_text("mod").splitlines()) == 5  # header + 4
    assert len(gather_report(damaged).modules) == 4
    assert time.monotonic() - start < 20
    assert [str(d) for d in guard.damage_notes(damaged)] == [
        f"list modules: loops back to {modules[1] + offset:#x} after 4 entries; stopped there"
    ]


def test_guarded_walks_equal_drgns(prog: drgn.Program) -> None:
    """On lists that do not loop, the guarded walks yield what drgn's own do."""
    import drgn.helpers.linux.list as lists

    head = prog["init_task"].tasks.address_of_()
    forward = [pos.value_() for pos in lists.list_for_each(head)]
    backward = [pos.value_() for pos in lists.list_for_each_reverse(head)]
    assert lists._kdumpkit_guarded and len(forward) > 50 and forward == backward[::-1]
    modules = prog["modules"].address_of_()
    assert [m.value_() for m in lists.list_for_each_entry("struct module", modules, "list")]


def test_list_guard_installs_when_drgn_lists_are_first_imported(kdump61: Path) -> None:
    """In a fresh process the guard waits for drgn's list module to be imported (bt
    imports none of drgn's Linux helpers) and guards it then."""
    import subprocess
    import sys

    probe = (
        "import sys; from kdumpkit.analyze.program import open_program; "
        "open_program(sys.argv[1]); assert 'drgn.helpers.linux' not in sys.modules; "
        "import drgn.helpers.linux.list as l; print(l._kdumpkit_guarded, "
        "l.list_for_each.__module__)"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe, str(kdump61)], capture_output=True, text=True, check=True
    )
    assert run.stdout.split() == ["True", "kdumpkit.analyze.guard"]


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("prog.read(1 << 40, 8, True)", "-e: FaultError: "),
        ("print(x)", "-e: NameError: name 'x' is not defined"),
        ("print((", "-e: SyntaxError: "),
    ],
)
def test_shell_code_errors_are_one_line(
    kdump61: Path, code: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """shell -e: a page the dump lacks, or the code's own mistake, is one line (exit 2)."""
    status, _out, err = _run(["shell", str(kdump61), "-e", code], capsys)
    assert status == 2 and err.startswith(f"kdumpkit shell: {message}") and err.count("\n") == 1
