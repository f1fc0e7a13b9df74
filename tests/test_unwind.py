"""ORC from the dump's memory and the unwinder, against crash 9.0.2's traces (with DWARF)."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import drgn
import pytest
from oracles import built_folder, built_vmlinux

from kdumpkit.analyze.program import open_program
from kdumpkit.analyze.stack import (
    MAX_FRAMES,
    StackRegion,
    _CpuStacks,
    _State,
    _Unwinder,
    cpu_current_task,
    panic_cpu,
    stack_trace,
)
from kdumpkit.debuginfo.orc import (
    ORC_HASH_V3,
    ORC_HASH_V4,
    ORC_REG_AX,
    ORC_REG_BP,
    ORC_REG_BP_INDIRECT,
    ORC_REG_DI,
    ORC_REG_DX,
    ORC_REG_PREV_SP,
    ORC_REG_R10,
    ORC_REG_R13,
    ORC_REG_SP,
    ORC_REG_SP_INDIRECT,
    ORC_REG_UNDEFINED,
    ORC_TYPE_CALL,
    ORC_TYPE_END_OF_STACK,
    ORC_TYPE_REGS,
    ORC_TYPE_REGS_PARTIAL,
    ORC_TYPE_UNDEFINED,
    LazyOrcTable,
    OrcUnwindInfo,
    decode_orc_flags,
    orc_format_version,
)

FRAME_RE = re.compile(r"\s*#(\d+) \[([0-9a-f]+)\] (\S+) at ([0-9a-f]+)(?: \[(\S+)\])?$")


def crash_traces(path: Path) -> dict[int, list[tuple[int, str, int]]]:
    """task address -> [(sp, function, pc)] from a crash ``bt`` output file."""
    traces: dict[int, list[tuple[int, str, int]]] = {}
    task = None
    for line in path.read_text().splitlines():
        header = re.match(r"PID: \d+\s+TASK: ([0-9a-f]+)", line)
        if header:
            task = int(header.group(1), 16)
            traces[task] = []
            continue
        frame = FRAME_RE.match(line)
        if frame and task is not None:
            traces[task].append((int(frame.group(2), 16), frame.group(3), int(frame.group(4), 16)))
    return traces


def as_tuples(frames: list[Any]) -> list[tuple[int, str, int]]:
    return [(f.sp, f.function, f.pc) for f in frames]


@pytest.fixture(scope="module")
def prog(kdump61: Path) -> drgn.Program:
    return open_program(kdump61)


# --- the ORC entry format ---------------------------------------------------------------


def flags(sp_reg: int, bp_reg: int, bits: int) -> int:
    return sp_reg | bp_reg << 4 | bits << 8


def test_orc_version1_layout() -> None:
    # sp_reg:4 bp_reg:4 type:2 end:1; CALL=0 REGS=1 REGS_PARTIAL=2
    call = decode_orc_flags(8, -16, flags(ORC_REG_SP, ORC_REG_PREV_SP, 0), 1)
    assert (call.type, call.signal) == (ORC_TYPE_CALL, False)
    assert (call.sp_offset, call.bp_offset, call.bp_reg) == (8, -16, ORC_REG_PREV_SP)
    regs = decode_orc_flags(0, 0, flags(ORC_REG_SP, 0, 1), 1)
    assert (regs.type, regs.signal) == (ORC_TYPE_REGS, True)
    partial = decode_orc_flags(0, 0, flags(ORC_REG_SP, 0, 2), 1)
    assert partial.type == ORC_TYPE_REGS_PARTIAL
    end = decode_orc_flags(0, 0, flags(ORC_REG_UNDEFINED, 0, 0b100), 1)
    assert end.type == ORC_TYPE_END_OF_STACK and end.ends_stack
    undefined = decode_orc_flags(0, 0, flags(ORC_REG_UNDEFINED, 0, 0), 1)
    assert undefined.type == ORC_TYPE_UNDEFINED and undefined.ends_stack


def test_orc_version2_layout() -> None:
    # sp_reg:4 bp_reg:4 type:2 signal:1 end:1
    signal_call = decode_orc_flags(16, 0, flags(ORC_REG_SP, 0, 0b0100), 2)
    assert (signal_call.type, signal_call.signal) == (ORC_TYPE_CALL, True)
    end = decode_orc_flags(0, 0, flags(ORC_REG_UNDEFINED, 0, 0b1000), 2)
    assert end.type == ORC_TYPE_END_OF_STACK


def test_orc_version3_layout() -> None:
    # sp_reg:4 bp_reg:4 type:3 signal:1; UNDEFINED=0 END_OF_STACK=1 CALL=2 REGS=3 REGS_PARTIAL=4
    for code, expected in (
        (0, ORC_TYPE_UNDEFINED),
        (1, ORC_TYPE_END_OF_STACK),
        (2, ORC_TYPE_CALL),
        (3, ORC_TYPE_REGS),
        (4, ORC_TYPE_REGS_PARTIAL),
    ):
        assert decode_orc_flags(0, 0, flags(ORC_REG_SP, ORC_REG_BP, code), 3).type == expected
    assert decode_orc_flags(0, 0, flags(ORC_REG_SP, 0, 0b1010), 3).signal


def test_orc_version4_registers() -> None:
    # Linux 7.1's orc_types.h (Debian 7.3.4 headers): UNDEFINED=0 AX=1 DX=2 SP=3 BP=4 DI=5
    # R10=6 R13=7 PREV_SP=8 SP_INDIRECT=9 BP_INDIRECT=10; the same type/signal bits as 3.
    renumbered = (
        ORC_REG_UNDEFINED,
        ORC_REG_AX,
        ORC_REG_DX,
        ORC_REG_SP,
        ORC_REG_BP,
        ORC_REG_DI,
        ORC_REG_R10,
        ORC_REG_R13,
        ORC_REG_PREV_SP,
        ORC_REG_SP_INDIRECT,
        ORC_REG_BP_INDIRECT,
    )
    for number, reg in enumerate(renumbered):
        entry = decode_orc_flags(8, -16, flags(number, number, 0b1010), 4)
        assert (entry.sp_reg, entry.bp_reg, entry.type, entry.signal) == (
            reg,
            reg,
            ORC_TYPE_CALL,
            True,
        )
    # A CALL entry with CFA = SP + 8 and the caller's BP at CFA - 16, as objtool writes.
    assert decode_orc_flags(8, -16, flags(3, 8, 2), 4) == decode_orc_flags(
        8, -16, flags(ORC_REG_SP, ORC_REG_PREV_SP, 2), 3
    )


def test_orc_version_from_header_and_data() -> None:
    import numpy as np

    empty = np.zeros(0, dtype=np.uint16)
    assert orc_format_version(empty, True, ORC_HASH_V3) == 3
    assert orc_format_version(empty, True, ORC_HASH_V4) == 4
    # An unknown hash: most entries' CFA register is SP, 5 before 7.1 and 3 after.
    old = np.array([flags(5, 1, 2)] * 90 + [flags(3, 0, 2)] * 10, dtype=np.uint16)
    new = np.array([flags(3, 8, 2)] * 90 + [flags(5, 0, 2)] * 10, dtype=np.uint16)
    assert orc_format_version(old, True, b"\0" * 20) == 3
    assert orc_format_version(new, True, b"\0" * 20) == 4
    assert orc_format_version(old, True, None) == 3


def test_orc_version4_on_73_dump() -> None:
    """The real 7.3 kdump: its .orc_header is the 7.1 hash, and every task unwinds
    through the same kernel pcs as drgn 0.3.0 with the -dbg vmlinux's DWARF and ORC.
    Not compared: the panic task's frames below vpanic (crash starts at machine_kexec,
    drgn at the saved registers) and a task drgn finds in user mode (crash shows the
    NMI that stopped it)."""
    vmcore = built_folder("7.3", "kdump-load", "vmcore.elf") / "vmcore.elf"
    vmlinux = built_vmlinux("7.3")
    from drgn.helpers.linux.pid import find_task, for_each_task

    prog = open_program(vmcore)
    assert OrcUnwindInfo(prog).vmlinux.version == 4
    reference = drgn.Program()
    reference.set_core_dump(str(vmcore))
    reference.load_debug_info([str(vmlinux)])
    vpanic = prog.symbol("vpanic")
    compared = 0
    for task in for_each_task(reference):
        theirs: list[int] = []
        for frame in reference.stack_trace(task):
            if frame.pc < 1 << 63:
                break
            if not theirs or theirs[-1] != frame.pc:  # inlined callers share the pc
                theirs.append(frame.pc)
        if not theirs:
            continue
        ours = [
            frame.pc
            for frame in stack_trace(prog, find_task(prog, task.pid.value_()))
            if not frame.saved_state and frame.pc >= 1 << 63
        ]
        if any(vpanic.address <= pc < vpanic.address + vpanic.size for pc in theirs):
            ours = ours[
                [vpanic.address <= pc < vpanic.address + vpanic.size for pc in ours].index(True) :
            ]
            theirs = theirs[-len(ours) :]
        assert ours == theirs, task.comm.string_()
        compared += 1
    assert compared >= 60


# --- ORC tables from the dump -------------------------------------------------------------


def test_vmlinux_orc_lazy_lookup_equals_full_table(prog: drgn.Program) -> None:
    orc = OrcUnwindInfo(prog)
    table = orc.vmlinux
    assert isinstance(table, LazyOrcTable)
    # 6.1 has no .orc_header: the format is told by the entry code's entries.
    assert table.version == 1
    assert len(table) > 300_000
    lazy = LazyOrcTable(
        prog,
        table.ip_table,
        table.entry_table,
        table.count,
        table.lookup,
        table.lookup_blocks,
        table.stext,
        table.etext,
        table.end,
        table.version,
    )
    full = table.full()
    rng = random.Random(61)
    for _ in range(300):
        pc = rng.randrange(table.stext, table.etext)
        assert lazy.find(pc) == full.find(pc), hex(pc)
        assert lazy._full is None  # the window path answered


def test_corrupt_orc_lookup_falls_back_to_the_table(prog: drgn.Program) -> None:
    table = OrcUnwindInfo(prog).vmlinux
    assert isinstance(table, LazyOrcTable)
    full = table.full()
    # orc_lookup pointed at kernel text: windows that do not bracket pc are refused.
    garbage = LazyOrcTable(
        prog,
        table.ip_table,
        table.entry_table,
        table.count,
        prog.symbol("schedule").address,
        table.lookup_blocks,
        table.stext,
        table.etext,
        table.end,
        table.version,
    )
    rng = random.Random(7)
    for _ in range(200):
        pc = rng.randrange(table.stext, table.etext)
        assert garbage.find(pc) == full.find(pc), hex(pc)
        garbage._full = None


def test_module_orc_tables(prog: drgn.Program, fx61: Path) -> None:
    names = {
        line.split()[1] for line in (fx61 / "crash-9.0.2" / "mod.txt").read_text().splitlines()[1:]
    }
    orc = OrcUnwindInfo(prog)
    tables = {table.module: table for table in orc.modules()}
    assert set(tables) == names
    brd = tables["brd"]
    symbol = prog.symbol("brd_submit_bio")
    assert brd.covers(symbol.address)
    entry = orc.find(symbol.address)
    assert entry is not None and entry.type == ORC_TYPE_CALL and entry.sp_reg == ORC_REG_SP
    assert entry.sp_offset == 8  # at a function's entry only the return address is pushed


# --- traces against crash ------------------------------------------------------------------


def test_saved_registers_come_from_each_cpus_crash_notes(prog: drgn.Program) -> None:
    from kdumpkit.analyze.stack import _crash_notes_registers

    statuses = prog.cache["kdumpkit.dump"].prstatus
    from_memory = _crash_notes_registers(prog)
    assert from_memory == {status.cpu: status.registers for status in statuses}
    assert from_memory[1]["cs"] == 0x33  # CPU 1 was stopped in user mode


def test_panic_cpu_trace_matches_crash(prog: drgn.Program, fx61: Path) -> None:
    expected = crash_traces(fx61 / "crash-9.0.2" / "bt.txt")
    cpu = panic_cpu(prog)
    assert cpu == 0
    task = cpu_current_task(prog, cpu)
    assert task is not None and task.pid.value_() == 134
    frames = stack_trace(prog, cpu)
    assert as_tuples(frames) == expected[task.value_()]
    # frame #0 is machine_kexec, found below the saved RSP (crash_setup_regs in __crash_kexec)
    assert frames[0].sp < prog.cache["kdumpkit.dump"].prstatus[0].registers["rsp"]
    last = frames[-1]
    assert last.is_exception_frame and last.user_mode
    assert last.registers is not None and last.registers["orig_rax"] == 1  # write(2)


def test_nmi_stopped_cpu_trace_matches_crash(prog: drgn.Program, fx61: Path) -> None:
    expected = crash_traces(fx61 / "crash-9.0.2" / "bt-a.txt")
    frames = stack_trace(prog, 1)
    task = cpu_current_task(prog, 1)
    assert task is not None
    assert as_tuples(frames) == expected[task.value_()]
    saved = prog.cache["kdumpkit.dump"].prstatus[1].registers
    assert frames[-1].registers is not None
    assert frames[-1].registers["rip"] == saved["rip"] and frames[-1].user_mode


def test_every_task_matches_crash_frame_for_frame(prog: drgn.Program, fx61: Path) -> None:
    expected = crash_traces(fx61 / "crash-9.0.2" / "foreach-bt.txt")
    matched = 0
    for address, frames in expected.items():
        task = drgn.Object(prog, "struct task_struct *", address)
        if as_tuples(stack_trace(prog, task)) == frames:
            matched += 1
    assert matched == len(expected) == 60


# --- bounds on hostile stacks ------------------------------------------------------------------


class FakeStackProgram:
    """The real program, except that one stack range reads from a bytearray."""

    def __init__(self, prog: drgn.Program, low: int, data: bytearray) -> None:
        self._prog = prog
        self.low = low
        self.data = data
        self.cache: dict[str, Any] = dict(prog.cache)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._prog, name)

    def read(self, address: int, size: int, physical: bool = False) -> bytes:
        offset = address - self.low
        if 0 <= offset and offset + size <= len(self.data):
            return bytes(self.data[offset : offset + size])
        if self.low - 4096 <= address < self.low + len(self.data) + 4096:
            raise drgn.FaultError("outside the fake stack", address)
        return self._prog.read(address, size, physical)

    def read_u64(self, address: int) -> int:
        return int.from_bytes(self.read(address, 8), "little")


def unwind_fake(prog: drgn.Program, words: list[int], start_pc: int) -> list[Any]:
    low = 0xFFFFC90000100000
    data = bytearray(b"".join(w.to_bytes(8, "little") for w in words))
    fake = FakeStackProgram(prog, low, data)
    unwinder = _Unwinder(fake)  # type: ignore[arg-type]
    unwinder.orc._modules = []  # no struct module walk through the stand-in program
    stacks = _CpuStacks([StackRegion(None, low, low + len(data))])
    return unwinder.unwind(_State(start_pc, low + 8, None, None, False, low), stacks)


def test_stack_full_of_one_return_address_is_bounded(prog: drgn.Program) -> None:
    ret = prog.symbol("schedule").address + 0x3A
    frames = unwind_fake(prog, [ret] * 2048, ret)
    assert 0 < len(frames) <= MAX_FRAMES
    sps = [f.sp for f in frames]
    assert sps == sorted(set(sps))  # strictly upwards


def test_random_stack_terminates(prog: drgn.Program) -> None:
    rng = random.Random(7)
    text = prog.symbol("_stext").address
    words = [rng.choice([rng.getrandbits(64), text + rng.randrange(0x800000)]) for _ in range(2048)]
    for start in range(0, 40, 4):
        frames = unwind_fake(prog, words, words[start] if words[start] > text else text + 0x100)
        assert len(frames) <= MAX_FRAMES


def test_pt_regs_pointing_back_down_stops(prog: drgn.Program) -> None:
    # An entry-code return address (a REGS frame) whose pt_regs says the interrupted
    # kernel RSP is below the frame: the unwinder must not loop.
    low = 0xFFFFC90000100000
    entry_ret = next(f.pc for f in stack_trace(prog, 0) if f.is_exception_frame)
    regs = [0] * 21
    regs[16] = entry_ret  # rip: the same entry point again
    regs[17] = 0x10  # kernel cs
    regs[19] = low + 8  # rsp: back at the start
    frames = unwind_fake(prog, [entry_ret, *regs, *([0] * 64)], entry_ret)
    assert len(frames) <= MAX_FRAMES
    assert len(frames) < 4


def test_corrupt_saved_registers_give_bounded_traces(prog: drgn.Program) -> None:
    from kdumpkit.dump.notes import X86_64_PR_REG_NAMES

    unwinder = _Unwinder(prog)
    real = prog.cache["kdumpkit.dump"].prstatus[0].registers
    rng = random.Random(3)
    text = prog.symbol("_stext").address
    for _ in range(60):
        registers = {name: rng.getrandbits(64) for name in X86_64_PR_REG_NAMES}
        registers["cs"] = rng.choice([0x10, 0x33])
        choice = rng.random()
        if choice < 0.4:  # a kernel pc with a random stack
            registers["rip"] = text + rng.randrange(0xC00000)
        elif choice < 0.8:  # the real stack with a random pc, or the reverse
            registers["rsp"] = real["rsp"] + 8 * rng.randrange(-64, 64)
            registers["rip"] = rng.choice([real["rip"], text + rng.randrange(0xC00000)])
        unwinder.cpu_registers = {0: registers}
        frames = unwinder.cpu_trace(0)
        assert len(frames) <= MAX_FRAMES
