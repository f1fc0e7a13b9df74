"""The frame-pointer unwinder core (analyze/stack.py), shared by arm64 and by x86_64 where
ORC has nothing (BPF JIT code used to end a backtrace)."""

from __future__ import annotations

from pathlib import Path

import drgn

from kdumpkit.analyze.program import open_program
from kdumpkit.analyze.stack import (
    FrameRecord,
    StackRegion,
    _CpuStacks,
    _State,
    _Unwinder,
    read_frame_record,
)
from kdumpkit.debuginfo.orc import ORC_REG_SP, ORC_TYPE_CALL

#: A synthetic task stack (nothing of the real dump is read there).
STACK_LOW = 0xFFFFC90000F00000
STACK_HIGH = STACK_LOW + 0x4000
#: Module space that no module of the fixture occupies: code without ORC, as a BPF
#: program JIT-compiled there is.
JIT_PC = 0xFFFFFFFFC1F00123


class _Overlay(_Unwinder):
    """The real 6.1 dump's unwinder with a synthetic stack laid over its memory."""

    def __init__(self, prog: drgn.Program, words: dict[int, int]) -> None:
        super().__init__(prog)
        self.words = words

    def read_u64(self, address: int) -> int:
        if address in self.words:
            return self.words[address]
        if STACK_LOW <= address < STACK_HIGH:
            return 0
        return super().read_u64(address)


def _call_site(unwinder: _Unwinder, prog: drgn.Program, function: str) -> tuple[int, int]:
    """A pc in ``function`` whose ORC entry is a plain call frame (CFA = sp + offset)."""
    symbol = prog.symbol(function)
    for pc in range(symbol.address + 1, symbol.address + symbol.size):
        entry = unwinder.orc.find(pc - 1)
        if entry is not None and entry.type == ORC_TYPE_CALL and entry.sp_reg == ORC_REG_SP:
            if entry.sp_offset > 8:
                return pc, entry.sp_offset
    raise AssertionError(f"no call frame in {function}")


def test_x86_64_unwinds_past_code_without_orc(kdump61: Path) -> None:
    prog = open_program(kdump61)
    plain = _Unwinder(prog)
    assert not plain.is_text(JIT_PC)
    ret1, cfa1 = _call_site(plain, prog, "__sys_bpf")
    ret2, _ = _call_site(plain, prog, "__x64_sys_bpf")
    # The JIT frame: sp at STACK_LOW + 0x100, its rbp 0x40 above; the frame record there
    # returns into __sys_bpf, whose ORC then finds the return into __x64_sys_bpf.
    sp, bp = STACK_LOW + 0x100, STACK_LOW + 0x140
    caller_sp = bp + 16
    words = {bp: STACK_LOW + 0x300, bp + 8: ret1, caller_sp + cfa1 - 8: ret2}
    unwinder = _Overlay(prog, words)
    stacks = _CpuStacks([StackRegion(None, STACK_LOW, STACK_HIGH)])
    frames = unwinder.unwind(_State(JIT_PC, sp, bp, None, True, sp), stacks)
    names = [f.function for f in frames]
    assert names[:3] == [None, "__sys_bpf", "__x64_sys_bpf"]
    assert frames[1].pc == ret1 and frames[1].sp == bp + 8
    assert frames[2].pc == ret2 and frames[2].sp == caller_sp + cfa1 - 8
    # Without a frame pointer the trace still ends at the JIT frame, as before.
    frames = unwinder.unwind(_State(JIT_PC, sp, None, None, True, sp), stacks)
    assert [f.function for f in frames] == [None]


def test_read_frame_record_bounds() -> None:
    stacks = _CpuStacks([StackRegion(None, 0x1000, 0x2000), StackRegion("IRQ", 0x8000, 0x9000)])
    memory = {0x1800: 0x1900, 0x1808: 0xFFFF800008012345 & ~(0xFF << 48), 0x8FF8: 1}
    read = memory.__getitem__

    def strip(address: int) -> int:
        return address | 0xFFFF000000000000

    record = read_frame_record(read, 0x1800, stacks, above=0x1700, strip=strip)
    assert record == FrameRecord(0x1800, 0x1900, 0xFFFF800008012345)
    assert read_frame_record(read, 0x1804, stacks, above=0x1700, align=16) is None  # aligned
    assert read_frame_record(read, 0x1800, stacks, above=0x1800) is None  # goes down
    assert read_frame_record(read, 0x3000, stacks) is None  # on no stack
    assert read_frame_record(read, 0x8FF8, stacks) is None  # runs off its stack
    # A switch to another stack may go down in address.
    memory[0x1000] = memory[0x1008] = 0
    assert read_frame_record(read, 0x1000, stacks, above=0x8800) == FrameRecord(0x1000, 0, 0)


def test_frame_record_read_fault() -> None:
    stacks = _CpuStacks([StackRegion(None, 0x1000, 0x2000)])

    def read(address: int) -> int:
        raise drgn.FaultError("not in the dump", address)

    assert read_frame_record(read, 0x1800, stacks) is None
