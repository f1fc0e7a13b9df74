"""A task's backtrace as ``bt`` prints it, shared by ``bt`` and ``foreach bt``
(a helper module: it defines no command)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import drgn

from kdumpkit.analyze.crashformat import (
    arm64_register_lines,
    bt_task_header,
    exception_rip_line,
    frame_line,
    register_lines,
)
from kdumpkit.analyze.facts.memory import slab_cache_name
from kdumpkit.analyze.facts.symbols import symbolize
from kdumpkit.analyze.facts.tasks import task_comm
from kdumpkit.analyze.stack import (
    Frame,
    UnwindError,
    cpu_stack_trace,
    image_symbol,
    stack_trace,
    task_cpu,
    text_symbol,
)
from kdumpkit.dump.errors import DumpError
from kdumpkit.kernel.x86_64_layout import KERNEL_SPACE_START, START_KERNEL_MAP

if TYPE_CHECKING:
    from drgn import Object, Program

#: ``bt -f`` shows at most this many bytes of one frame
MAX_FRAME_BYTES = 1 << 16


def stack_word_text(prog: Program, word: int, symbolic: int) -> str:
    """A stack word as ``bt -f`` (hex) or ``bt -F`` (``func+off``, ``[slab cache]``,
    ``[address:slab cache]`` with ``-FF``) shows it."""
    if not symbolic or word < KERNEL_SPACE_START:
        return f"{word:016x}"
    # The kernel image (text and data) and module text are named by symbol.
    found = image_symbol(prog, word) if word >= START_KERNEL_MAP else text_symbol(prog, word)
    if found is not None:
        name, offset = found
        return f"{name}+{offset}" if offset else name
    # any word in a slab page, object allocated or free (crash's vaddr_to_kmem_cache())
    cache = slab_cache_name(prog, word)
    if cache is not None:
        return f"[{word:x}:{cache}]" if symbolic > 1 else f"[{cache}]"
    return f"{word:016x}"


def frame_data_lines(
    prog: Program, frame: Frame, next_frame: Frame, symbolic: int = 0
) -> list[str]:
    """``bt -f``: the stack words between a frame's slot and the next frame's, two a
    line; with ``symbolic`` (``-F``, ``-FF``) named as text symbols or slab objects."""
    # up to and including the next frame's return address, as crash shows them
    start, end = frame.sp + 8, next_frame.sp + 8
    if not 0 < end - start <= MAX_FRAME_BYTES or frame.registers is not None:
        return []
    try:
        data = prog.read(start, end - start)
    except drgn.FaultError:
        return []
    words = [int.from_bytes(data[i : i + 8], "little") for i in range(0, len(data), 8)]
    lines = []
    for i in range(0, len(words), 2):
        cells = "".join(
            f"{stack_word_text(prog, word, symbolic):<16} " for word in words[i : i + 2]
        )
        lines.append(f"    {start + 8 * i:x}: {cells}")
    return lines


def arm64_pt_regs_tail(prog: Program, frame: Frame) -> tuple[int, int] | None:
    """``orig_x0`` and ``syscallno`` of the pt_regs an arm64 exception frame's registers
    came from (its frame record, ``frame.sp``, is ``pt_regs.stackframe``)."""
    if frame.saved_state:
        return None
    try:
        regs_type = prog.type("struct pt_regs")
        base = frame.sp - drgn.offsetof(regs_type, "stackframe")
        orig_x0 = prog.read_u64(base + drgn.offsetof(regs_type, "orig_x0"))
        syscallno = prog.read_u32(base + drgn.offsetof(regs_type, "syscallno"))
    except (LookupError, ValueError, drgn.FaultError):
        return None
    return orig_x0, syscallno


def render_trace(
    prog: Program,
    frames: list[Frame],
    *,
    full: bool = False,
    with_offset: bool = False,
    symbolic: int = 0,
    hex_offsets: bool = False,
) -> list[str]:
    """The frame lines of one trace, with exception registers and stack transitions."""
    lines: list[str] = []
    number = 0
    for index, frame in enumerate(frames):
        following = frames[index + 1] if index + 1 < len(frames) else None
        if frame.hidden:
            continue
        if not (frame.saved_state or frame.interrupted):
            lines.append(frame_line(number, frame, with_offset, hex_offsets))
            number += 1
            if (full or symbolic) and following is not None:
                lines.extend(frame_data_lines(prog, frame, following, symbolic))
        if frame.registers is not None and "pstate" in frame.registers:
            lines.extend(arm64_register_lines(frame.registers, arm64_pt_regs_tail(prog, frame)))
        elif frame.registers is not None:
            if not frame.user_mode:
                lines.append(exception_rip_line(symbolize(prog, frame.registers["rip"])))
            lines.extend(register_lines(frame.registers, orig_rax=not frame.saved_state))
        if following is not None and frame.stack is not None and following.stack != frame.stack:
            lines.append(f"--- <{frame.stack} stack> ---")
    return lines


def backtrace(
    prog: Program,
    task: Object,
    *,
    cpu: int | None = None,
    full: bool = False,
    with_offset: bool = False,
    symbolic: int = 0,
    hex_offsets: bool = False,
) -> tuple[str, dict[str, Any]]:
    """One task's ``bt`` block (header and frames) and its record: pid, task, cpu, comm,
    frames (:meth:`Frame.to_json`) and, when the trace could not be started, error."""
    on_cpu = cpu is not None
    if cpu is None:
        cpu = task_cpu(task)
    pid, address, comm = task.pid.value_(), task.value_(), task_comm(task)
    header = bt_task_header(pid, address, cpu, comm)
    row: dict[str, Any] = {"pid": pid, "task": address, "cpu": cpu, "comm": comm, "frames": []}
    try:
        frames = cpu_stack_trace(prog, cpu, task) if on_cpu else stack_trace(prog, task)
    except (UnwindError, DumpError, drgn.FaultError) as exc:
        row["error"] = str(exc)
        return f"{header}\nbt: {exc}\n", row
    row["frames"] = [frame.to_json(i) for i, frame in enumerate(frames)]
    lines = [
        header,
        *render_trace(
            prog,
            frames,
            full=full,
            with_offset=with_offset,
            symbolic=symbolic,
            hex_offsets=hex_offsets,
        ),
    ]
    return "\n".join(lines) + "\n", row
