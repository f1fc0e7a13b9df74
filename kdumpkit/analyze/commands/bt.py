"""``bt``: kernel stack backtraces in crash's format, unwound with ORC from the dump."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import drgn

from kdumpkit.analyze.commands.base import Command, CommandError, Result, register
from kdumpkit.analyze.commands.common import (
    CONTEXT_KEY,
    active_tasks,
    find_task_arg,
    for_each_task_with_idle,
    panic_task,
    task_comm,
)
from kdumpkit.analyze.stack import (
    Frame,
    UnwindError,
    _unwinder,
    cpu_current_task,
    cpu_stack_trace,
    panic_cpu,
    saved_registers,
    stack_trace,
    task_cpu,
)
from kdumpkit.dump.errors import DumpError

if TYPE_CHECKING:
    from drgn import Object, Program

#: More CPUs than this in one ``-c`` range is a typing error.
MAX_CPUS = 1 << 13
#: crash's register block: (label, register) triples per line; labels are right-aligned.
_REGISTER_ROWS = (
    (("RIP", "rip"), ("RSP", "rsp"), ("RFLAGS", "eflags")),
    (("RAX", "rax"), ("RBX", "rbx"), ("RCX", "rcx")),
    (("RDX", "rdx"), ("RSI", "rsi"), ("RDI", "rdi")),
    (("RBP", "rbp"), ("R8", "r8"), ("R9", "r9")),
    (("R10", "r10"), ("R11", "r11"), ("R12", "r12")),
    (("R13", "r13"), ("R14", "r14"), ("R15", "r15")),
)


def task_header(task: Object, cpu: int) -> str:
    """crash's ``PID: ... TASK: ... CPU: ... COMMAND: "..."`` line."""
    return (
        f"PID: {task.pid.value_():<7}  TASK: {task.value_():<16x}  CPU: {cpu:<3}  "
        f'COMMAND: "{task_comm(task)}"'
    )


def register_lines(registers: dict[str, int], orig_rax: bool = True) -> list[str]:
    """An exception frame's saved registers, as crash prints them (a CPU's saved state
    without ORIG_RAX)."""
    lines = []
    for row in _REGISTER_ROWS:
        cells = []
        for label, name in row:
            width = 8 if name == "eflags" else 16
            cells.append(f"{label:>3}: {registers[name]:0{width}x}")
        lines.append("    " + "  ".join(cells))
    segments = f"CS: {registers['cs']:04x}  SS: {registers['ss']:04x}"
    if orig_rax:
        lines.append(f"    ORIG_RAX: {registers['orig_rax']:016x}  {segments}")
    else:
        lines.append(f"    {segments}")
    return lines


def arm64_register_lines(prog: Program, frame: Frame) -> list[str]:
    """An arm64 exception frame's registers as crash prints them: PC, LR, SP, then x29
    down to x0 three a line, then ORIG_X0, SYSCALLNO and PSTATE (read from the pt_regs
    that hold the registers, which follow user_pt_regs)."""
    registers = frame.registers or {}
    lines = [
        f"     PC: {registers['pc']:016x}   LR: {registers['x30']:016x}   "
        f"SP: {registers['sp']:016x}"
    ]
    cells = [f"{f'X{n}':>3}: {registers[f'x{n}']:016x}" for n in range(29, -1, -1)]
    for i in range(0, len(cells), 3):
        lines.append("    " + "  ".join(cells[i : i + 3]))
    extra = _arm64_pt_regs_tail(prog, frame)
    if extra is not None:
        orig_x0, syscallno = extra
        lines.append(
            f"    ORIG_X0: {orig_x0:016x}  SYSCALLNO: {syscallno:x}  "
            f"PSTATE: {registers['pstate']:08x}"
        )
    return lines


def _arm64_pt_regs_tail(prog: Program, frame: Frame) -> tuple[int, int] | None:
    """``orig_x0`` and ``syscallno`` of the pt_regs an exception frame's registers came
    from (its frame record, ``frame.sp``, is ``pt_regs.stackframe``)."""
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


def exception_rip_line(prog: Program, rip: int) -> str:
    """``[exception RIP: func+off]`` (decimal offset, as crash prints it)."""
    try:
        symbol = prog.symbol(rip)
    except LookupError:
        return "    [exception RIP: unknown or invalid address]"
    offset = rip - symbol.address
    return f"    [exception RIP: {symbol.name}{f'+{offset}' if offset else ''}]"


def frame_line(index: int, frame: Frame, with_offset: bool = False) -> str:
    """`` #N [sp] function at pc [module]``."""
    name = frame.symbol_text if with_offset else (frame.function or f"{frame.pc:x}")
    module = f" [{frame.module}]" if frame.module else ""
    pc = frame.pc if frame.display_pc is None else frame.display_pc
    return f"{'' if index >= 10 else ' '}#{index} [{frame.sp:x}] {name} at {pc:x}{module}"


def frame_data_lines(
    prog: Program, frame: Frame, next_frame: Frame, symbolic: int = 0
) -> list[str]:
    """``bt -f``: the stack words between a frame's slot and the next frame's, two a
    line; with ``symbolic`` (``-F``, ``-FF``) named as text symbols or slab objects."""
    start, end = frame.sp + 8, next_frame.sp
    if not 0 < end - start <= 1 << 16 or frame.registers is not None:
        return []
    try:
        data = prog.read(start, end - start)
    except drgn.FaultError:
        return []
    words = [int.from_bytes(data[i : i + 8], "little") for i in range(0, len(data), 8)]
    lines = []
    for i in range(0, len(words), 2):
        cells = "".join(f"{stack_word_text(prog, word, symbolic)} " for word in words[i : i + 2])
        lines.append(f"    {start + 8 * i:x}: {cells}")
    return lines


#: Below this an address is not the kernel's (user space, or small numbers).
KERNEL_SPACE_START = 0xFFFF800000000000
#: __START_KERNEL_map: the kernel image and, above it, the modules.
KERNEL_IMAGE_START = 0xFFFFFFFF80000000


def stack_word_text(prog: Program, word: int, symbolic: int) -> str:
    """A stack word as ``bt -f`` (hex) or ``bt -F`` (``func+off``, ``[slab cache]``,
    ``[address:slab cache]`` with ``-FF``) shows it."""
    if not symbolic or word < KERNEL_SPACE_START:
        return f"{word:016x}"
    unwinder = _unwinder(prog)
    if word >= KERNEL_IMAGE_START or unwinder.is_text(word):
        # The kernel image (text and data) and module text are named by symbol.
        name, offset, _ = unwinder.symbolize(word, True)
        if name is not None:
            return f"{name}+{offset}" if offset else name
    slab = _slab_object(prog, word)
    if slab is not None:
        address, cache = slab
        return f"[{address:x}:{cache}]" if symbolic > 1 else f"[{cache}]"
    return f"{word:016x}"


def _slab_object(prog: Program, address: int) -> tuple[int, str] | None:
    from drgn.helpers.linux.slab import slab_object_info

    try:
        info = slab_object_info(prog, address)
        if info is None or not info.allocated:
            return None
        return info.address, info.slab_cache.name.string_().decode("latin-1", "replace")
    except (LookupError, ValueError, drgn.FaultError, AttributeError):
        return None


def render_trace(
    prog: Program,
    frames: list[Frame],
    *,
    full: bool = False,
    with_offset: bool = False,
    symbolic: int = 0,
) -> list[str]:
    """The frame lines of one trace, with exception registers and stack transitions."""
    lines: list[str] = []
    number = 0
    for index, frame in enumerate(frames):
        following = frames[index + 1] if index + 1 < len(frames) else None
        if frame.hidden:
            continue
        if not (frame.saved_state or frame.interrupted):
            lines.append(frame_line(number, frame, with_offset))
            number += 1
            if (full or symbolic) and following is not None:
                lines.extend(frame_data_lines(prog, frame, following, symbolic))
        if frame.registers is not None and "pstate" in frame.registers:
            lines.extend(arm64_register_lines(prog, frame))
        elif frame.registers is not None:
            if not frame.user_mode:
                lines.append(exception_rip_line(prog, frame.registers["rip"]))
            lines.extend(register_lines(frame.registers, orig_rax=not frame.saved_state))
        if following is not None and frame.stack is not None and following.stack != frame.stack:
            lines.append(f"--- <{frame.stack} stack> ---")
    return lines


def frame_row(index: int, frame: Frame) -> dict[str, Any]:
    """One frame as a JSON record."""
    return {
        "level": index,
        "sp": frame.sp,
        "pc": frame.pc,
        "function": frame.function,
        "offset": frame.offset,
        "module": frame.module,
        "exception": frame.is_exception_frame,
        "registers": frame.registers,
        "user_mode": frame.user_mode,
        "stack": frame.stack,
        "saved_state": frame.saved_state,
        "interrupted": frame.interrupted,
    }


def task_cpu_of(prog: Program, task: Object) -> int:
    """The CPU crash shows for a task: where it runs or last ran."""
    return task_cpu(task)


def backtrace(
    prog: Program,
    task: Object,
    *,
    cpu: int | None = None,
    full: bool = False,
    with_offset: bool = False,
    symbolic: int = 0,
) -> tuple[str, dict[str, Any]]:
    """One task's ``bt`` block (header and frames) and its record."""
    on_cpu = cpu is not None
    if cpu is None:
        cpu = task_cpu_of(prog, task)
    header = task_header(task, cpu)
    row: dict[str, Any] = {
        "pid": task.pid.value_(),
        "task": task.value_(),
        "cpu": cpu,
        "comm": task_comm(task),
        "frames": [],
    }
    try:
        frames = cpu_stack_trace(prog, cpu, task) if on_cpu else stack_trace(prog, task)
    except (UnwindError, DumpError, drgn.FaultError) as exc:
        row["error"] = str(exc)
        return f"{header}\nbt: {exc}\n", row
    row["frames"] = [frame_row(i, frame) for i, frame in enumerate(frames)]
    lines = [
        header,
        *render_trace(prog, frames, full=full, with_offset=with_offset, symbolic=symbolic),
    ]
    return "\n".join(lines) + "\n", row


def resolve_task(prog: Program, target: str) -> Object:
    """A PID or a task address; an address must be one of the kernel's tasks."""
    task = find_task_arg(prog, target)
    if not target.strip().isdigit():
        known = {t.value_() for t in for_each_task_with_idle(prog)}
        if task.value_() not in known:
            raise CommandError(f"invalid task or pid value: {target}")
    return task


def default_task(prog: Program) -> Object | None:
    """The panic task: the task current on the CPU that panicked."""
    try:
        task = cpu_current_task(prog, panic_cpu(prog))
    except DumpError:
        task = None
    return task if task is not None else panic_task(prog)


def cpu_tasks(prog: Program) -> list[tuple[int, Object]]:
    """(cpu, task) for the task running on each CPU whose registers the dump saved
    (a CPU stopped by panic() is offline, yet its task is still the one it ran)."""
    found: dict[int, Object] = {}
    for cpu in sorted(saved_registers(prog)):
        try:
            task = cpu_current_task(prog, cpu)
        except (DumpError, drgn.FaultError):
            task = None
        if task is not None:
            found[cpu] = task
    if not found:
        for address, cpu in active_tasks(prog).items():
            found[cpu] = drgn.Object(prog, "struct task_struct *", address)
    return sorted(found.items())


@register
class Bt(Command):
    name = "bt"
    help = "backtrace of a task (the panic task by default), all CPUs with -a"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "-a", dest="all_cpus", action="store_true", help="the active task on each CPU"
        )
        parser.add_argument(
            "-c",
            dest="cpus",
            action="append",
            default=[],
            metavar="cpu",
            help="the active task on this CPU (repeatable, or 0,1)",
        )
        parser.add_argument(
            "-f", dest="full", action="store_true", help="also show the stack data of each frame"
        )
        parser.add_argument(
            "-F",
            dest="symbolic",
            action="count",
            default=0,
            help="like -f, with text symbols and [slab cache] names (-FF: [address:slab cache])",
        )
        parser.add_argument(
            "-s", dest="with_offset", action="store_true", help="show symbol+offset"
        )
        parser.add_argument(
            "targets",
            nargs="*",
            metavar="pid | taskp",
            help="a PID (decimal) or a task_struct address (hex)",
        )

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        work: list[tuple[Object, int | None]] = []
        if args.all_cpus:
            work = [(task, cpu) for cpu, task in cpu_tasks(prog)]
        elif args.cpus:
            wanted = _parse_cpus(args.cpus)
            running = dict(cpu_tasks(prog))
            for cpu in wanted:
                if cpu not in running:
                    raise CommandError(f"invalid cpu number: {cpu}")
                work.append((running[cpu], cpu))
        elif args.targets:
            work = [(resolve_task(prog, target), None) for target in args.targets]
        else:
            task = prog.cache.get(CONTEXT_KEY) or default_task(prog)
            if task is None:
                raise CommandError("no panic task; give a PID or task address")
            work = [(task, None)]
        blocks, rows = [], []
        for task, cpu in work:
            text, row = backtrace(
                prog,
                task,
                cpu=cpu,
                full=args.full,
                with_offset=args.with_offset,
                symbolic=args.symbolic,
            )
            blocks.append(text)
            rows.append(row)
        return Result("\n".join(blocks), rows)


def _parse_cpus(values: list[str]) -> list[int]:
    cpus: list[int] = []
    for value in values:
        for part in value.split(","):
            try:
                if "-" in part:
                    low, high = (int(x) for x in part.split("-", 1))
                    if not 0 <= high - low < MAX_CPUS:
                        raise ValueError(part)
                    cpus.extend(range(low, high + 1))
                else:
                    cpus.append(int(part))
            except ValueError:
                raise CommandError(f"invalid cpu specification: {value}") from None
    return cpus
