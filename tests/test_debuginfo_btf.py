"""The BTF parser and the drgn types built from it: synthetic blobs of every kind, the
real 6.1 kernel's BTF against VMCOREINFO, and corrupt blobs."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import drgn
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdumpkit.analyze.program import open_program
from kdumpkit.debuginfo.btf import Btf, BtfError, Kind
from kdumpkit.debuginfo.btf_types import BtfTypes


class BtfBuilder:
    """Writes a BTF blob type by type (ids from ``start_id``), for tests."""

    def __init__(self, start_id: int = 1, str_start: int = 0) -> None:
        self.types = bytearray()
        self.strings = bytearray(b"" if str_start else b"\0")
        self.str_start = str_start
        self.next_id = start_id

    def name(self, text: str | None) -> int:
        if not text:
            return 0
        offset = self.str_start + len(self.strings)
        self.strings += text.encode() + b"\0"
        return offset

    def add(self, kind: Kind, name: str | None, vlen: int, size_or_type: int,
            extra: bytes = b"", kind_flag: bool = False) -> int:  # fmt: skip
        info = (int(kind) << 24) | vlen | (int(kind_flag) << 31)
        self.types += struct.pack("<III", self.name(name), info, size_or_type) + extra
        self.next_id += 1
        return self.next_id - 1

    def blob(self) -> bytes:
        header = struct.pack(
            "<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(self.types), len(self.types), len(self.strings)
        )
        return header + bytes(self.types) + bytes(self.strings)


def _every_kind() -> tuple[bytes, dict[str, int]]:
    b = BtfBuilder()
    ids: dict[str, int] = {}
    ids["int"] = b.add(Kind.INT, "int", 0, 4, struct.pack("<I", (1 << 24) | 32))
    ids["uint"] = b.add(Kind.INT, "unsigned int", 0, 4, struct.pack("<I", 32))
    ids["char"] = b.add(Kind.INT, "char", 0, 1, struct.pack("<I", (3 << 24) | 8))
    ids["bool"] = b.add(Kind.INT, "_Bool", 0, 1, struct.pack("<I", (4 << 24) | 8))
    ids["ptr"] = b.add(Kind.PTR, None, 0, ids["int"])
    ids["array"] = b.add(Kind.ARRAY, None, 0, 0, struct.pack("<III", ids["char"], ids["int"], 16))
    fwd_union = b.add(Kind.FWD, "later", 0, 0, kind_flag=True)
    members = b"".join(
        struct.pack("<III", b.name(n), t, off)
        for n, t, off in (
            ("a", ids["int"], 0),
            ("flag", ids["uint"], (1 << 24) | 32),  # 1-bit field at bit 32
            ("mode", ids["uint"], (3 << 24) | 33),
            ("name", ids["array"], 64),
            ("next", ids["ptr"], 192),
            (None, fwd_union, 256),
        )
    )
    ids["struct"] = b.add(Kind.STRUCT, "thing", 6, 40, members, kind_flag=True)
    enum_items = struct.pack("<Ii", b.name("RED"), -1) + struct.pack("<Ii", b.name("BLUE"), 7)
    ids["enum"] = b.add(Kind.ENUM, "colour", 2, 4, enum_items, kind_flag=True)
    big = struct.pack("<III", b.name("HUGE"), 0, 1)
    ids["enum64"] = b.add(Kind.ENUM64, "wide", 1, 8, big)
    ids["typedef"] = b.add(Kind.TYPEDEF, "thing_t", 0, ids["struct"])
    ids["volatile"] = b.add(Kind.VOLATILE, None, 0, ids["int"])
    ids["const"] = b.add(Kind.CONST, None, 0, ids["volatile"])
    ids["restrict"] = b.add(Kind.RESTRICT, None, 0, ids["ptr"])
    params = struct.pack("<II", b.name("x"), ids["int"]) + struct.pack("<II", 0, 0)
    ids["proto"] = b.add(Kind.FUNC_PROTO, None, 2, ids["int"], params)
    ids["func"] = b.add(Kind.FUNC, "frob", 1, ids["proto"])
    ids["var"] = b.add(Kind.VAR, "counter", 0, ids["int"], struct.pack("<I", 1))
    sec = struct.pack("<III", ids["var"], 0x40, 4)
    ids["datasec"] = b.add(Kind.DATASEC, ".data..percpu", 1, 0x100, sec)
    ids["float"] = b.add(Kind.FLOAT, "double", 0, 8)
    ids["decl_tag"] = b.add(Kind.DECL_TAG, "user", 0, ids["struct"], struct.pack("<i", -1))
    ids["type_tag"] = b.add(Kind.TYPE_TAG, "percpu", 0, ids["int"])
    ids["union"] = b.add(Kind.UNION, "later", 1, 4, struct.pack("<III", b.name("u"), ids["int"], 0))
    return b.blob(), ids


def test_every_kind_decodes() -> None:
    blob, ids = _every_kind()
    btf = Btf(blob, name="test")
    assert len(btf) == len(ids) + 1  # plus the forward declaration
    for key, type_id in ids.items():
        assert (
            btf.type(type_id).kind == Kind[key.upper()] if key.upper() in Kind.__members__ else True
        )
    thing = btf.type(ids["struct"])
    assert [(m.name, m.bit_offset, m.bitfield_size) for m in thing.items[:3]] == [
        ("a", 0, 0), ("flag", 32, 1), ("mode", 33, 3)
    ]  # fmt: skip
    assert [e.value for e in btf.type(ids["enum"]).items] == [-1, 7]
    assert btf.type(ids["enum64"]).items[0].value == 1 << 32
    assert btf.enumerator("BLUE") == (ids["enum"], 7)
    assert btf.ids_by_name("counter") == [ids["var"]]
    assert btf.type(ids["datasec"]).items[0].offset == 0x40
    assert btf.type(ids["decl_tag"]).extra == (-1,)
    assert btf.sizeof(ids["typedef"]) == 40


def test_drgn_types_from_every_kind() -> None:
    blob, ids = _every_kind()
    prog = drgn.Program(drgn.Platform(drgn.Architecture.X86_64))
    types = BtfTypes(prog, Btf(blob, name="test"))
    prog.register_type_finder("btf", types.type_finder, enable_index=0)
    thing = prog.type("struct thing")
    assert thing.size == 40
    assert drgn.offsetof(thing, "name") == 8
    assert thing.member("mode").bit_field_size == 3 and thing.member("mode").bit_offset == 33
    assert thing.member("next").type.type.name == "int"
    assert thing.member("name").type.length == 16
    # The anonymous member refers to a FWD of a union that is defined later.
    assert thing.members[5].type.kind == drgn.TypeKind.UNION
    assert prog.type("thing_t").type.tag == "thing"
    assert prog.type("enum colour").enumerators[0].value == -1
    assert prog.type("_Bool").kind == drgn.TypeKind.BOOL
    assert prog.type("union later").size == 4
    qualified = types.type(types.vmlinux, ids["const"])
    assert qualified.qualifiers == drgn.Qualifiers.CONST | drgn.Qualifiers.VOLATILE
    func = types.type(types.vmlinux, ids["func"])
    assert func.kind == drgn.TypeKind.FUNCTION and func.is_variadic
    assert [p.name for p in func.parameters] == ["x"]
    assert prog.type("double").kind == drgn.TypeKind.FLOAT


def test_split_btf_refers_to_base() -> None:
    blob, ids = _every_kind()
    base = Btf(blob, name="vmlinux")
    module = BtfBuilder(start_id=base.end_id, str_start=len(base.strings))
    members = struct.pack("<III", module.name("t"), ids["typedef"], 0)
    mod_id = module.add(Kind.STRUCT, "mod_thing", 1, 40, members)
    split = Btf(module.blob(), base=base, name="mod")
    assert split.type(mod_id).name == "mod_thing"
    assert split.type(ids["int"]).name == "int"
    assert split.ids_by_name("mod_thing") == [mod_id]
    prog = drgn.Program(drgn.Platform(drgn.Architecture.X86_64))
    types = BtfTypes(prog, base)
    types.add_module(split)
    assert types.find([drgn.TypeKind.STRUCT], "mod_thing").member("t").type.name == "thing_t"


def _corrupt(kind: str) -> bytes:
    blob, _ = _every_kind()
    if kind == "magic":
        return b"\x00\x00" + blob[2:]
    if kind == "truncated":
        return blob[:-40]
    if kind == "header":
        return blob[:10]
    if kind == "unknown-kind":
        data = bytearray(blob)
        struct.pack_into("<I", data, 24 + 4, 31 << 24)
        return bytes(data)
    if kind == "vlen":
        data = bytearray(blob)
        struct.pack_into("<I", data, 24 + 4, (int(Kind.STRUCT) << 24) | 0xFFFF)
        return bytes(data)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["magic", "truncated", "header", "unknown-kind", "vlen"])
def test_corrupt_blob_is_one_line_error(kind: str) -> None:
    with pytest.raises(BtfError) as info:
        Btf(_corrupt(kind), name="vmlinux")
    assert "\n" not in str(info.value) and "vmlinux BTF" in str(info.value)


def test_bad_references_are_one_line_errors() -> None:
    b = BtfBuilder()
    loop = b.add(Kind.TYPEDEF, "loop", 0, 1)  # refers to itself
    dangling = b.add(Kind.PTR, None, 0, 999)
    btf = Btf(b.blob(), name="bad")
    types = BtfTypes(drgn.Program(drgn.Platform(drgn.Architecture.X86_64)), btf)
    for type_id in (loop, dangling):
        with pytest.raises(BtfError) as info:
            types.type(btf, type_id)
        assert "\n" not in str(info.value)


# --- the real kernel's BTF ---------------------------------------------------------------


@pytest.fixture(scope="module")
def prog(kdump61: Path) -> drgn.Program:
    return open_program(kdump61)


def test_real_blob_parses_fast(prog: drgn.Program) -> None:
    btf = prog.cache["kdumpkit.debuginfo"].btf
    symbols = prog.cache["kdumpkit.debuginfo"].symbols
    start, stop = symbols.address("__start_BTF"), symbols.address("__stop_BTF")
    blob = prog.read(start, stop - start)
    began = time.process_time()
    again = Btf(blob)
    elapsed = time.process_time() - began
    assert len(again) == len(btf) > 90_000
    assert elapsed < 0.3, f"parsing {len(blob)} bytes took {elapsed:.3f} s (target 0.1 s)"
    counts = {kind: len(again.ids_of_kind(kind)) for kind in Kind}
    assert counts[Kind.STRUCT] > 5000 and counts[Kind.VAR] == 356 and counts[Kind.DATASEC] == 1


def _vmcoreinfo_type(prog: drgn.Program, name: str) -> drgn.Type:
    try:
        return prog.type(f"struct {name}")
    except LookupError:
        return prog.type(name)


def test_layouts_equal_vmcoreinfo(prog: drgn.Program) -> None:
    vmcoreinfo = prog.cache["kdumpkit.dump"].vmcoreinfo
    checked = 0
    for key, value in vmcoreinfo.items():
        if key.startswith("OFFSET("):
            struct_name, member = key[7:-1].split(".", 1)
            assert drgn.offsetof(_vmcoreinfo_type(prog, struct_name), member) == int(value), key
            checked += 1
        elif key.startswith("SIZE("):
            assert drgn.sizeof(_vmcoreinfo_type(prog, key[5:-1])) == int(value), key
            checked += 1
    assert checked >= 60
    assert prog.type("struct zone").member("free_area").type.length == vmcoreinfo.length(
        "zone.free_area"
    )
    free_list = prog.type("struct free_area").member("free_list").type
    assert free_list.length == vmcoreinfo.length("free_area.free_list")
    dev_info = prog.type("struct dev_printk_info")
    assert dev_info.member("subsystem").type.length == vmcoreinfo.length("printk_info_subsystem")
    assert dev_info.member("device").type.length == vmcoreinfo.length("printk_info_device")


def test_every_struct_builds_with_btf_sizes(prog: drgn.Program) -> None:
    """Every named struct/union of the kernel becomes a drgn type of BTF's size."""
    info = prog.cache["kdumpkit.debuginfo"]
    btf, types = info.btf, info.types
    checked = 0
    for kind in (Kind.STRUCT, Kind.UNION):
        for type_id in btf.ids_of_kind(kind)[::7]:  # a seventh of them keeps this quick
            drgn_type = types.type(btf, type_id)
            assert drgn_type.size == btf.type(type_id).size
            if drgn_type.members:
                assert drgn_type.members[-1].type is not None
            checked += 1
    assert checked > 1000


def test_corrupt_btf_in_the_dump_is_one_line_error(kdump61: Path) -> None:
    """A dump whose BTF pages are garbage: opening fails with one BtfError line."""
    from kdumpkit.analyze.program import program_from_dump
    from kdumpkit.debuginfo.loader import load_dump_debuginfo
    from kdumpkit.debuginfo.symbols import load_vmcoreinfo_kallsyms
    from kdumpkit.dump.open import open_dump

    with open_dump(kdump61) as dump:
        prog = program_from_dump(dump)
        symbols = load_vmcoreinfo_kallsyms(dump.vmcoreinfo, prog.read)
        start, stop = symbols.address("__start_BTF"), symbols.address("__stop_BTF")
        garbage = bytes(range(256)) * ((stop - start) // 256 + 1)
        # A later segment takes precedence over the dump's memory.
        prog.add_memory_segment(
            start,
            stop - start,
            lambda address, count, offset, physical: garbage[offset : offset + count],
        )
        with pytest.raises(BtfError) as info:
            load_dump_debuginfo(prog, dump.vmcoreinfo, symbols=symbols)
        assert "\n" not in str(info.value) and "magic" in str(info.value)


HOST_BTF = Path("/sys/kernel/btf/vmlinux")


def test_host_kernel_btf_builds_completely() -> None:
    """A second real blob: the running kernel's (newer, with ENUM64 and tags), when readable."""
    try:
        blob = HOST_BTF.read_bytes()
    except OSError:
        pytest.skip(f"{HOST_BTF} is not readable here")
    began = time.process_time()
    btf = Btf(blob)
    elapsed = time.process_time() - began
    assert elapsed < 0.3, f"parsing {len(blob)} bytes took {elapsed:.3f} s"
    prog = drgn.Program(drgn.Platform(drgn.Architecture.X86_64))
    types = BtfTypes(prog, btf)
    prog.register_type_finder("btf", types.type_finder, enable_index=0)
    built = 0
    for kind in (Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.TYPEDEF, Kind.FUNC):
        for type_id in btf.ids_of_kind(kind)[::20]:
            drgn_type = types.type(btf, type_id)
            if kind in (Kind.STRUCT, Kind.UNION):
                assert drgn_type.size == btf.type(type_id).size
                for member in drgn_type.members:
                    assert member.type is not None
            built += 1
    assert built > 1000
    assert prog.type("struct list_head").size == 16
    assert drgn.offsetof(prog.type("struct list_head"), "prev") == 8


def _flip_bytes(data: st.DataObject, blob: bytes) -> bytearray:
    """``blob`` with 1 to 8 bytes set to values hypothesis draws."""
    mutated = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(mutated) - 1))
        mutated[position] = data.draw(st.integers(0, 255))
    return mutated


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_blobs_parse_or_fail_cleanly(data: st.DataObject) -> None:
    """Random byte flips anywhere in a valid blob: BtfError or a working parse, nothing else."""
    blob, _ = _every_kind()
    mutated = _flip_bytes(data, blob)
    try:
        btf = Btf(bytes(mutated), name="fuzz")
        types = BtfTypes(drgn.Program(drgn.Platform(drgn.Architecture.X86_64)), btf)
        for type_id in btf.iter_ids():
            built = types.type(btf, type_id)
            if built.kind in (drgn.TypeKind.STRUCT, drgn.TypeKind.UNION) and built.is_complete():
                for member in built.members:
                    member.type  # noqa: B018 - resolves the lazy member
        btf.enumerator("RED")
        btf.ids_by_name("thing")
    except BtfError as exc:
        assert "\n" not in str(exc)


def test_name_search_equals_name_index(prog: drgn.Program) -> None:
    """The first lookups search the strings; later ones use the dict and sorted index:
    both give the same ids, repeated strings included."""
    blob, _ids = _every_kind()
    names = [
        "task_struct",
        "list_head",
        "pt_regs",
        "init_task",
        "runqueues",
        "int",
        "no_such_type_here",
        "",
        "é",
        "later",
        "thing",
        "colour",
    ]
    symbols = prog.cache["kdumpkit.debuginfo"].symbols
    start, stop = symbols.address("__start_BTF"), symbols.address("__stop_BTF")
    for data in (blob, prog.read(start, stop - start)):
        searched, indexed = Btf(data), Btf(data)
        indexed._strings_by_name()  # from now on the dict and the sorted index answer
        for name in names:
            assert searched.ids_by_name(name) == indexed.ids_by_name(name), name
        assert searched._string_offsets is None and len(searched._searched) == len(names)
        assert searched.ids_by_name("task_struct") == indexed.ids_by_name("task_struct")
    # the test blob names a FWD and a UNION "later" with two equal strings
    later = Btf(blob)
    assert [later.kind_of(i) for i in later.ids_by_name("later")] == [Kind.FWD, Kind.UNION]


def test_enumerator_search_equals_enumerator_index(prog: drgn.Program) -> None:
    """An enumerator found by searching for its name's offset among the enums' items is
    the one the index of every enum's items gives (first enum by id)."""
    symbols = prog.cache["kdumpkit.debuginfo"].symbols
    start, stop = symbols.address("__start_BTF"), symbols.address("__stop_BTF")
    blob, _ids = _every_kind()
    for data in (blob, prog.read(start, stop - start)):
        indexed = Btf(data)
        index = indexed._enumerator_index()
        searched = Btf(data)
        names = [
            *list(index)[::53],
            "RED",
            "BLUE",
            "HUGE",
            "N_ONLINE",
            "LOG_CONT",
            "task_struct",
            "pid",
            "no_such_enumerator",
            "counter",
            "thing",
        ]
        for name in names:
            assert searched._find_enumerator(name) == index.get(name), name
            assert searched.enumerator(name) == indexed.enumerator(name), name
    assert Btf(blob).enumerator("RED") == (_ids["enum"], -1)


def _both_walks(btf: Btf) -> tuple[list[int] | None, list[int] | str]:
    from kdumpkit.debuginfo.btf import _walk_vectorised

    quick = _walk_vectorised(btf._words)
    try:
        exact: list[int] | str = btf._walk_one_by_one(btf._words).tolist()
    except BtfError as exc:
        exact = str(exc)
    return (None if quick is None else quick.tolist()), exact


def test_vectorised_walk_equals_record_by_record(prog: drgn.Program) -> None:
    """The record offsets found all at once are those of the record-by-record walk, for
    vmlinux's BTF and every module's split BTF."""
    info = prog.cache["kdumpkit.debuginfo"]
    blobs = [info.btf, *(module.btf for module in info.load_modules(prog))]
    assert len(blobs) > 10
    for btf in blobs:
        quick, exact = _both_walks(btf)
        assert quick is not None and quick == exact, btf.name


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_vectorised_walk_on_mutated_blobs(data: st.DataObject) -> None:
    """Flipped bytes: the quick walk gives the exact offsets or leaves the blob to the
    record-by-record walk (never other offsets, never a blob that walk rejects)."""
    blob, _ = _every_kind()
    mutated = _flip_bytes(data, blob)
    try:
        btf = Btf(bytes(mutated), name="fuzz")
    except BtfError:
        return
    quick, exact = _both_walks(btf)
    assert quick is None or quick == exact
