"""open_program() on the real 6.1 dump, with no vmlinux, against crash 9.0.2 and makedumpfile."""

from __future__ import annotations

import os
import time
from pathlib import Path

import drgn
import pytest
from drgn.helpers.linux.module import for_each_module
from drgn.helpers.linux.percpu import per_cpu
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.printk import get_printk_records
from drgn.helpers.linux.sched import task_cpu
from oracles import built_folder, missing_input

from kdumpkit.analyze.program import open_program
from kdumpkit.debuginfo.btf import Kind
from kdumpkit.dump.errors import DumpError


@pytest.fixture(scope="module")
def prog(kdump61: Path) -> drgn.Program:
    return open_program(kdump61)


def _crash_ps(crash_dir: Path) -> list[tuple[int, int, int, int, str]]:
    """(pid, ppid, cpu, task, comm) rows of crash's ps, brackets of kernel threads removed."""
    rows = []
    for line in (crash_dir / "ps.txt").read_text().splitlines()[1:]:
        fields = line.lstrip(">").split(None, 8)
        comm = fields[8].strip()
        if comm.startswith("[") and comm.endswith("]"):
            comm = comm[1:-1]
        rows.append((int(fields[0]), int(fields[1]), int(fields[2]), int(fields[3], 16), comm))
    return rows


def _ps_rows(prog: drgn.Program) -> list[tuple[int, int, int, int, str]]:
    rows = []
    for cpu in range(prog["nr_cpu_ids"].value_()):
        idle = per_cpu(prog["runqueues"], cpu).idle
        rows.append((0, 0, cpu, idle.value_(), idle.comm.string_().decode()))
    for task in for_each_task(prog):
        rows.append(
            (
                task.pid.value_(),
                task.real_parent.pid.value_(),
                task_cpu(task),
                task.value_(),
                task.comm.string_().decode(),
            )
        )
    return sorted(rows)


def test_task_list_equals_crash_ps(prog: drgn.Program, fx61: Path) -> None:
    assert _ps_rows(prog) == sorted(_crash_ps(fx61 / "crash-9.0.2"))


def _dmesg_lines(prog: drgn.Program) -> str:
    """get_printk_records() formatted as makedumpfile --dump-dmesg prints them."""
    out = []
    for record in get_printk_records(prog):
        prefix = f"[{record.timestamp // 10**9:5d}.{record.timestamp % 10**9 // 1000:06d}] "
        text = record.text.decode("utf-8", "replace")
        out.append(prefix + text.replace("\n", "\n" + " " * len(prefix)))
    return "\n".join(out) + "\n"


def test_printk_records_equal_makedumpfile(prog: drgn.Program, fx61: Path) -> None:
    expected = (fx61 / "makedumpfile" / "dump-dmesg.txt").read_text()
    assert _dmesg_lines(prog) == expected


def _crash_mod(crash_dir: Path) -> list[tuple[int, str, int, int]]:
    rows = []
    for line in (crash_dir / "mod.txt").read_text().splitlines()[1:]:
        address, name, base, size = line.split()[:4]
        rows.append((int(address, 16), name, int(base, 16), int(size)))
    return sorted(rows)


def _module_rows(prog: drgn.Program) -> list[tuple[int, str, int, int]]:
    """(module, name, text base, size) as crash's mod prints them."""
    modules = []
    for module in for_each_module(prog):
        try:
            # Linux 6.4 "module: replace module_layout with module_memory": the text
            # region's base, and the size of all regions together.
            regions = module.mem
            base = regions[0].base.value_()
            size = sum(region.size.value_() for region in regions)
        except AttributeError:
            base = module.core_layout.base.value_()
            size = module.core_layout.size.value_()
        modules.append((module.value_(), module.name.string_().decode(), base, size))
    return sorted(modules)


def test_module_list_equals_crash_mod(prog: drgn.Program, fx61: Path) -> None:
    assert _module_rows(prog) == _crash_mod(fx61 / "crash-9.0.2")


def test_crashed_thread_and_globals(prog: drgn.Program, fx61: Path) -> None:
    thread = prog.crashed_thread()
    assert thread.tid == 134
    assert thread.object.comm.string_() == b"testbed_crasher"
    assert prog["init_uts_ns"].name.release.string_() == b"6.1.0-56-cloud-amd64"
    # drgn's with-vmlinux run printed jiffies = 4294893566.
    assert prog["jiffies"].value_() == 4294893566
    assert per_cpu(prog["runqueues"], 1).curr.comm.string_() == b"testbed_spinner"
    # drgn's own VMCOREINFO-derived objects still resolve behind our finder.
    assert prog["PAGE_SIZE"].value_() == 4096
    assert prog["UTS_RELEASE"].string_() == b"6.1.0-56-cloud-amd64"


@pytest.mark.parametrize("fixture", ["elf61", "flat61"])
def test_every_format_opens_the_same_kernel(fixture: str, request: pytest.FixtureRequest) -> None:
    prog = open_program(request.getfixturevalue(fixture))
    assert prog.crashed_thread().tid == 134
    assert sum(1 for _ in for_each_task(prog)) == 58
    assert prog.cache["kdumpkit.dump"].format in ("elf", "flat", "kdump")


def test_open_time(kdump61: Path) -> None:
    """Open + first types + symbols; the target is 0.3 s, allowed 3x (CPU time: the
    machine running the tests may be shared)."""
    open_program(kdump61)  # warm imports and the file cache
    start = time.process_time()
    prog = open_program(kdump61)
    prog["init_task"].comm.string_()
    prog.symbol("panic")
    elapsed = time.process_time() - start
    assert elapsed < 0.9, f"open + types + symbols took {elapsed:.2f} s"


def test_not_a_dump_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "junk"
    path.write_bytes(b"\0" * 4096)
    with pytest.raises(DumpError) as info:
        open_program(path)
    assert "\n" not in str(info.value)


def _cached_vmlinux(fx61: Path) -> Path:
    """The -dbg package's vmlinux if some earlier step cached it; else skip."""
    cache = Path(
        os.environ.get("KDUMPKIT_CACHE", Path(__file__).resolve().parent.parent / ".cache")
    )
    release = "6.1.0-56-cloud-amd64"
    for candidate in (
        cache / "debuginfo" / f"vmlinux-{release}",
        cache
        / "oracle"
        / "kernels"
        / release
        / "usr"
        / "lib"
        / "debug"
        / "boot"
        / f"vmlinux-{release}",
    ):
        if candidate.is_file():
            return candidate
    missing_input(f"the DWARF vmlinux-{release}", "make oracles")


#: Structs the commands and drgn's helpers read; their layouts must be identical.
KEY_STRUCTS = (
    "task_struct", "mm_struct", "module", "rq", "page", "printk_ringbuffer", "prb_desc",
    "printk_info", "pid_namespace", "uts_namespace", "zone", "pglist_data", "cfs_rq",
    "swap_info_struct", "hstate", "timekeeper", "percpu_counter", "btf", "btf_module",
    "mod_kallsyms", "inactive_task_frame", "pt_regs", "thread_struct", "signal_struct",
)  # fmt: skip


def _layout(type_: drgn.Type) -> tuple:
    return (
        drgn.sizeof(type_),
        tuple((m.name, m.bit_offset, m.bit_field_size) for m in type_.members),
    )


def test_dwarf_parity(kdump61: Path, fx61: Path, prog: drgn.Program) -> None:
    """With the vmlinux, the same program works from DWARF, and BTF layouts equal DWARF's."""
    dwarf = open_program(kdump61, vmlinux=_cached_vmlinux(fx61))
    assert dwarf.crashed_thread().tid == 134
    pids = sorted(t.pid.value_() for t in for_each_task(dwarf))
    assert pids == sorted(t.pid.value_() for t in for_each_task(prog))
    assert _dmesg_lines(dwarf) == _dmesg_lines(prog)
    assert dwarf.symbol(0xFFFFFFFFC0354140).name == "__this_module"  # modules via kallsyms
    # Whole objects print the same (pointer values unsymbolized: kallsyms has no sizes).
    for objects in (
        lambda p: p["init_task"],
        lambda p: per_cpu(p["runqueues"], 1),
        lambda p: p["prb"][0],
        lambda p: next(for_each_module(p)),
        lambda p: p["init_uts_ns"],
        lambda p: p["node_data"][0][0].node_zones[1],
        lambda p: p["tk_core"].timekeeper,
    ):
        assert objects(prog).format_(symbolize=False) == objects(dwarf).format_(symbolize=False)
    for name in KEY_STRUCTS:
        btf_type, dwarf_type = prog.type(f"struct {name}"), dwarf.type(f"struct {name}")
        assert _layout(btf_type) == _layout(dwarf_type), name
    info = prog.cache["kdumpkit.debuginfo"]
    sample = info.btf.ids_of_kind(Kind.STRUCT)[::50]
    same = 0
    for type_id in sample:
        btf_type = info.types.type(info.btf, type_id)
        if btf_type.tag is None:
            same += 1
            continue
        try:
            same += _layout(btf_type) == _layout(dwarf.type(f"struct {btf_type.tag}"))
        except LookupError:
            pass
    assert same >= 0.98 * len(sample), f"{same} of {len(sample)} layouts equal DWARF's"


def test_live_debuginfo_from_sys_and_proc() -> None:
    """The live path's types and symbols (host BTF, /proc/kallsyms), on a program without
    memory: /proc/kcore itself may be absent where the tests run."""
    from kdumpkit.debuginfo.loader import load_live_debuginfo

    try:
        kallsyms_head = Path("/proc/kallsyms").read_text()[:17]
        Path("/sys/kernel/btf/vmlinux").stat()
    except OSError:
        pytest.skip("no /proc/kallsyms or /sys/kernel/btf/vmlinux here")
    if int(kallsyms_head.split()[0], 16) == 0:
        pytest.skip("/proc/kallsyms hides addresses (not root)")
    prog = drgn.Program(drgn.Platform(drgn.Architecture.X86_64))
    info = load_live_debuginfo(prog)
    assert prog.type("struct list_head").size == 16
    assert drgn.offsetof(prog.type("struct task_struct"), "tasks") > 0
    stext = prog.symbol("_stext")
    assert stext.address == info.symbols.address("_stext") and stext.address >= 1 << 63
    assert prog.symbol(stext.address).address == stext.address
    assert prog["schedule"].type_.kind == drgn.TypeKind.FUNCTION


def test_dump_without_vmcoreinfo_note(kdump61: Path) -> None:
    """Like QEMU's dump-guest-memory without vmcoreinfo: the note comes from memory."""
    from kdumpkit.analyze.program import program_from_dump
    from kdumpkit.debuginfo.loader import load_dump_debuginfo
    from kdumpkit.dump.notes import encode_notes
    from kdumpkit.dump.open import open_dump

    with open_dump(kdump61) as dump:
        kept = [note for note in dump.notes if note.name != "VMCOREINFO"]
        dump.notes, dump.note_data = encode_notes(kept)
        dump.vmcoreinfo = None
        prog = program_from_dump(dump)
        assert dump.vmcoreinfo is not None and dump.vmcoreinfo.osrelease == "6.1.0-56-cloud-amd64"
        load_dump_debuginfo(prog, dump.vmcoreinfo)
        assert prog.crashed_thread().tid == 134
        assert prog["UTS_RELEASE"].string_() == b"6.1.0-56-cloud-amd64"


def test_kernel_6_12_equals_crash() -> None:
    """A second kernel: Debian's 6.12 dumped by the project's testbed (makedumpfile 1.7.8,
    which keeps the pages 1.7.2 drops on 6.12), with crash 9.0.2's outputs beside it."""
    name = "vmcore.mdf-1.7.8.kdump"
    folder = built_folder("6.12", "kdump-load", name, f"crash-9.0.2/{name}/ps.txt")
    dump, crash_dir = folder / name, folder / "crash-9.0.2" / name
    prog = open_program(dump)
    assert _ps_rows(prog) == sorted(_crash_ps(crash_dir))
    assert _module_rows(prog) == _crash_mod(crash_dir)
    assert _dmesg_lines(prog) == (crash_dir / "log.txt").read_text()
    panic_pid = int((crash_dir / "bt.txt").read_text().split()[1])
    assert prog.crashed_thread().tid == panic_pid
    assert prog.cache["kdumpkit.debuginfo"].objects.check_table() == {}


def test_drgn_plugin_names_of_an_entry_points_txt() -> None:
    from kdumpkit.analyze.program import drgn_plugin_names

    text = (
        "[console_scripts]\ndrgn = drgn.cli:_main\n\n[drgn.plugins]\n"
        "crash_commands = drgn.commands._crash\nmine = my.plugin\n\n[other]\nx = y\n"
    )
    assert drgn_plugin_names(text) == {"crash_commands", "mine"}
    assert drgn_plugin_names("[other]\nx = y\n") == set()


def test_plugin_scan_skipped_only_without_user_plugins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from kdumpkit.analyze.program import drgn_plugin_scan_skipped, third_party_drgn_plugins

    monkeypatch.delenv("DRGN_PLUGINS", raising=False)
    monkeypatch.delenv("DRGN_DISABLE_PLUGINS", raising=False)
    if third_party_drgn_plugins() != set():
        pytest.skip("this machine has drgn plugins of its own")
    with drgn_plugin_scan_skipped():
        assert os.environ["DRGN_DISABLE_PLUGINS"] == "*"
    assert "DRGN_DISABLE_PLUGINS" not in os.environ  # pipes' shells do not inherit it
    # A user's plugin on sys.path: drgn loads plugins as usual.
    dist = tmp_path / "userplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "entry_points.txt").write_text("[drgn.plugins]\nmine = userplugin\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    assert third_party_drgn_plugins() == {"mine"}
    with drgn_plugin_scan_skipped():
        assert "DRGN_DISABLE_PLUGINS" not in os.environ
    # A user's own choice is kept as it is.
    monkeypatch.setattr(sys, "path", sys.path[1:])
    monkeypatch.setenv("DRGN_DISABLE_PLUGINS", "mine")
    with drgn_plugin_scan_skipped():
        assert os.environ["DRGN_DISABLE_PLUGINS"] == "mine"


def test_numpy_without_blas_threads() -> None:
    """Importing the analysis leaves no OpenBLAS threads (~0.1 s CPU each start) and no
    OPENBLAS_NUM_THREADS for the shells it pipes to; a user's own setting is kept."""
    import subprocess
    import sys

    probe = (
        "import os, kdumpkit.analyze.program, numpy; "
        "print(len(os.listdir('/proc/self/task')), os.environ.get('OPENBLAS_NUM_THREADS'))"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["1", "None"]
    env["OPENBLAS_NUM_THREADS"] = "2"
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[1] == "2"


def test_open_pauses_garbage_collection_only_while_opening(kdump61: Path) -> None:
    import gc

    assert gc.isenabled()
    open_program(kdump61)
    assert gc.isenabled()
    gc.disable()
    try:
        open_program(kdump61)
        assert not gc.isenabled()  # the caller's choice is kept
    finally:
        gc.enable()
    with pytest.raises(DumpError):
        open_program(kdump61.parent / "no-such-dump")
    assert gc.isenabled()


def test_hand_typed_globals_equal_dwarf(kdump61: Path, fx61: Path, prog: drgn.Program) -> None:
    """Every global of the hand-typed table that the DWARF vmlinux declares has DWARF's
    address, type and size (array lengths found without DWARF included)."""
    from kdumpkit.debuginfo.globals import GLOBAL_TYPES

    dwarf = open_program(kdump61, vmlinux=_cached_vmlinux(fx61))

    def spelled(type_: drgn.Type) -> str:
        return type_.type_name().replace("const ", "").replace("volatile ", "")

    compared = 0
    for name in GLOBAL_TYPES:
        try:
            theirs = dwarf.variable(name)
        except LookupError:
            continue  # not in this kernel, or (totalram_pages) a function here
        ours = prog[name]
        assert ours.address_ == theirs.address_, name
        if theirs.type_.kind == drgn.TypeKind.ARRAY and not theirs.type_.is_complete():
            assert spelled(ours.type_.type) == spelled(theirs.type_.type), name  # linux_banner
        else:
            assert spelled(ours.type_) == spelled(theirs.type_), name
            assert drgn.sizeof(ours.type_) == drgn.sizeof(theirs.type_), name
        compared += 1
    assert compared > 120
