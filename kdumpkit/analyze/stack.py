"""Kernel stack traces from the dump alone: ORC read from memory, symbols from kallsyms.

A trace starts from one of three places:

* the CPU that panicked: its NT_PRSTATUS registers, saved by ``crash_setup_regs()``
  inside ``__crash_kexec()``.  ``machine_kexec()`` then ran below the saved RSP and
  its frame is still on the stack, so, as crash does, it is shown as frame #0 (its
  return slot is found below RSP and checked with ORC to unwind exactly to RSP).
  After an oops, ``crash_kexec(regs)`` saves the oops' pt_regs instead; then the
  ``machine_kexec()`` frame is looked for on the stack and accepted only if ORC
  unwinds from it to those very pt_regs;
* another CPU, stopped by the crash NMI: its NT_PRSTATUS holds the interrupted
  registers, and the NMI handler halted in ``crash_nmi_callback()``.  Its return
  address is looked for on the task's stack and the CPU's NMI stack; the slot is
  accepted only if ORC unwinds from it to the very pt_regs that NT_PRSTATUS holds;
* a task that is not running: ``task->thread.sp`` points at a ``struct
  inactive_task_frame`` (callee-saved registers, then the return address into
  ``__schedule``);
* any other saved CPU state (a hypervisor dump stops CPUs anywhere): the registers
  themselves; crash shows them as a register block (:attr:`Frame.saved_state`).

Unwinding follows the kernel's own ORC unwinder (``arch/x86/kernel/unwind_orc.c``):
CALL entries give the caller's stack pointer, REGS / REGS_PARTIAL entries a
``struct pt_regs`` (an exception frame; user-mode registers end the trace).
Functions the kernel marks STACK_FRAME_NON_STANDARD (``__crash_kexec``) have no ORC;
for them the caller is found by scanning up the stack for a return address whose
preceding ``call rel32`` targets the function.  The frames carry what crash's layout needs: the
stack each is on (IRQ / exception stacks, for the ``--- <IRQ stack> ---`` lines), and
which frame is only the code an exception interrupted (:attr:`Frame.interrupted`,
shown by crash as ``[exception RIP: ...]``).  Every trace is bounded: at most
:data:`MAX_FRAMES` frames, the stack pointer must grow within a stack, at most
:data:`MAX_STACK_SWITCHES` stack switches, and reads stay inside known stacks.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import drgn
import numpy as np

from kdumpkit.analyze.context import UNWINDER_KEY, program_dump, program_symbols
from kdumpkit.debuginfo.orc import (
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
    OrcEntry,
    OrcUnwindInfo,
)
from kdumpkit.dump.errors import DumpError

if TYPE_CHECKING:
    from kdumpkit.dump.base import Dump

#: Deep kernel stacks (network and storage stacks under an IRQ) reach about 100 frames.
MAX_FRAMES = 256
MAX_STACK_SWITCHES = 6
#: THREAD_SIZE and IRQ_STACK_SIZE on x86_64 without KASAN.
THREAD_SIZE = 16 << 10
#: EXCEPTION_STKSZ on x86_64 without KASAN.
EXCEPTION_STACK_SIZE = 8 << 10
#: Words scanned for a caller when a function has no ORC.
SCAN_WORDS = 512
#: The order of the IST stacks in ``struct cea_exception_stacks``, named as crash does.
EXCEPTION_STACK_NAMES = ("DOUBLEFAULT", "NMI", "DEBUG", "MCE", "VC", "VC2")
#: ``struct pt_regs`` in x86_64 order (the same as NT_PRSTATUS's pr_reg).
PT_REGS_NAMES = (
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
    "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss",
)  # fmt: skip
PT_REGS_SIZE = 8 * len(PT_REGS_NAMES)
#: offsetof(struct pt_regs, ip): a REGS_PARTIAL entry points at the iret frame.
IRET_FRAME_OFFSET = 8 * PT_REGS_NAMES.index("rip")
#: Functions that save the panic CPU's registers with crash_setup_regs() and then call
#: machine_kexec().
KEXEC_SAVERS = ("__crash_kexec", "crash_kexec")
#: The NMI handler in which the crash shootdown halts the other CPUs.
NMI_STOP_FUNCTION = "crash_nmi_callback"
#: The function that jumps to the capture kernel; it never returns, so its frame stays.
KEXEC_FUNCTION = "machine_kexec"
#: The x86_64 module area (MODULES_VADDR .. MODULES_END with 4-level paging).
MODULES_VADDR = 0xFFFFFFFFC0000000
MODULES_END = 0xFFFFFFFFFF000000
#: CONFIG_NR_CPUS's largest value on x86_64.
MAX_CPUS = 8192


#: arm64: the exception level and stack pointer choice in PSTATE's low bits; EL0t is user.
PSTATE_MODE_MASK = 0xF
PSTATE_EL0T = 0
#: arm64 THREAD_SIZE with 4K and 16K pages (THREAD_SHIFT 14 without KASAN); with 64K
#: pages a stack is one page.
AARCH64_MIN_THREAD_SIZE = 16 << 10
#: ``struct pt_regs`` begins with ``struct user_pt_regs``, NT_PRSTATUS's order.
AARCH64_PT_REGS_NAMES = (*(f"x{i}" for i in range(31)), "sp", "pc", "pstate")
#: offsetof(struct pt_regs, stackframe) when BTF cannot say: user_pt_regs (272 bytes),
#: orig_x0, syscallno + unused2, sdei_ttbr1, pmr_save (Linux 5.x to 6.12).
AARCH64_PT_REGS_STACKFRAME = 304
#: Linux kernel commit "arm64: stacktrace: unwind exception boundaries"
#: (in v6.13) zeroes the frame record in pt_regs and marks it by a type word after it.
FRAME_META_TYPE_FINAL = 1
FRAME_META_TYPE_PT_REGS = 2
#: Bytes of a function's prologue looked at for its pushes.
PROLOGUE_BYTES = 48


class UnwindError(DumpError):
    """A stack trace cannot be started (no registers, no ORC, unknown task)."""


@dataclass
class Frame:
    """One stack frame, as crash's ``bt`` shows it."""

    #: The frame's program counter: a return address, or the exact ip of an
    #: interrupted (or register-saving) frame.
    pc: int
    #: The stack address crash prints: where ``pc`` was found (the interrupted RSP
    #: for a frame entered by an exception).
    sp: int
    function: str | None
    offset: int
    module: str | None = None
    #: True when this frame's ORC entry is a pt_regs (entry code, exception).
    is_exception_frame: bool = False
    #: The saved ``struct pt_regs`` of an exception frame (NT_PRSTATUS names).
    registers: dict[str, int] | None = None
    #: True when ``registers`` are user-mode: the trace ends here.
    user_mode: bool = False
    #: The name of the non-process stack the frame is on ("IRQ", "NMI exception"...).
    stack: str | None = None
    #: The CPU's saved registers, not a frame of its own: crash prints only their
    #: register block (without ORIG_RAX) and numbers the frames from the next one.
    saved_state: bool = False
    #: The code a kernel-mode exception interrupted on the same stack: crash shows it
    #: only as the previous frame's ``[exception RIP: ...]`` line.
    interrupted: bool = False
    #: The address crash prints after "at" when it is not ``pc``: on arm64 the call
    #: instruction, 4 bytes before a return address.
    display_pc: int | None = None
    #: crash does not list this frame: on arm64 the last frame of a kernel thread (or
    #: idle task), whose frame record is the zeroed one in the pt_regs at the top of
    #: its stack.
    hidden: bool = False
    #: A frame left on a stack below the saved registers, as crash finds it
    #: (``machine_kexec()``, which never returned; the IPI handler that saved a
    #: stopped CPU's registers): crash lists it, drgn, which starts from the saved
    #: registers, does not.
    stale: bool = False

    def to_json(self, level: int) -> dict[str, Any]:
        """The frame as the JSON record ``bt --json`` and ``report --json`` share;
        ``level`` is its index in the trace, innermost 0."""
        return {"level": level, **asdict(self)}

    @property
    def symbol_text(self) -> str:
        """``function+off`` with a decimal offset, as crash's ``bt -s`` prints it (or
        the bare address)."""
        if self.function is None:
            return f"{self.pc:x}"
        return f"{self.function}+{self.offset}" if self.offset else self.function


@dataclass
class _State:
    pc: int
    sp: int
    bp: int | None
    #: Registers known in full for this frame (the start or after a pt_regs).
    regs: dict[str, int] | None
    #: pc is an exact ip, not a return address (start, or after an exception).
    signal: bool
    #: Where crash says this frame is.
    slot: int


@dataclass(frozen=True)
class StackRegion:
    """A stack: ``[low, high)``; ``name`` None for a task's own stack."""

    name: str | None
    low: int
    high: int

    def __contains__(self, address: object) -> bool:
        return isinstance(address, int) and self.low <= address < self.high


@dataclass
class _CpuStacks:
    regions: list[StackRegion] = field(default_factory=list)

    def find(self, address: int) -> StackRegion | None:
        for region in self.regions:
            if address in region:
                return region
        return None


@dataclass(frozen=True)
class FrameRecord:
    """A frame record: the two words a function's prologue pushes and its frame pointer
    points at (x86_64 ``push rbp; mov rbp, rsp``, arm64 ``stp x29, x30, [sp, #-N]!;
    mov x29, sp``): the caller's frame pointer, then the return address."""

    #: Where the record is (the frame pointer's value).
    address: int
    #: The caller's frame pointer (0 ends the chain).
    next_fp: int
    #: The return address into the caller, pointer-authentication bits stripped.
    return_address: int


def read_frame_record(
    read_u64: Callable[[int], int],
    fp: int,
    stacks: _CpuStacks,
    *,
    above: int = 0,
    align: int = 8,
    strip: Callable[[int], int] | None = None,
) -> FrameRecord | None:
    """The frame record at ``fp``, or None when ``fp`` cannot be one: not aligned, not
    inside a known stack with room for both words, or not above ``above`` (a chain
    only goes up a stack; pass the previous record's address or the stack pointer)."""
    if not fp or fp % align or (fp <= above and stacks.find(above) == stacks.find(fp)):
        return None
    region = stacks.find(fp)
    if region is None or fp + 16 > region.high:
        return None
    try:
        next_fp, ret = read_u64(fp), read_u64(fp + 8)
    except drgn.FaultError:
        return None
    return FrameRecord(fp, next_fp, strip(ret) if strip is not None and ret else ret)


def _unwinder(prog: drgn.Program) -> _Unwinder:
    unwinder = prog.cache.get(UNWINDER_KEY)
    if unwinder is None:
        if prog.platform is not None and prog.platform.arch == drgn.Architecture.AARCH64:
            unwinder = _AArch64Unwinder(prog)
        else:
            unwinder = _Unwinder(prog)
        prog.cache[UNWINDER_KEY] = unwinder
    return unwinder


def text_symbol(prog: drgn.Program, address: int) -> tuple[str, int] | None:
    """(function, offset) of a kernel or module text address as ``bt`` names it
    (the nearest kallsyms symbol at or below it), or None when it is not text."""
    unwinder = _unwinder(prog)
    if not unwinder.is_text(address):
        return None
    name, offset, _ = unwinder.symbolize(address, True)
    return (name, offset) if name is not None else None


def image_symbol(prog: drgn.Program, address: int) -> tuple[str, int] | None:
    """(symbol, offset) of an address in the kernel image or module text, as ``bt``
    names it (the nearest kallsyms symbol at or below it), or None."""
    name, offset, _ = _unwinder(prog).symbolize(address, True)
    return (name, offset) if name is not None else None


def user_mode(registers: dict[str, int]) -> bool:
    """Whether saved registers are user-mode ones (x86_64 CS ring 3, arm64 EL0)."""
    if "pstate" in registers:
        return registers["pstate"] & PSTATE_MODE_MASK == PSTATE_EL0T
    return bool(registers["cs"] & 3)


def stack_trace(prog: drgn.Program, task_or_cpu: drgn.Object | int) -> list[Frame]:
    """The stack trace of a task (``struct task_struct *``) or of a CPU's active task.

    An active task (running on a CPU at the crash) starts from that CPU's saved
    registers; any other task from its ``thread.sp``.
    """
    unwinder = _unwinder(prog)
    if isinstance(task_or_cpu, int):
        return unwinder.cpu_trace(task_or_cpu)
    return unwinder.task_trace(task_or_cpu)


def cpu_stack_trace(prog: drgn.Program, cpu: int, task: drgn.Object | None = None) -> list[Frame]:
    """The stack trace of what ``cpu`` was running at the crash (``task``, when known,
    gives its stack bounds)."""
    return _unwinder(prog).cpu_trace(cpu, task)


def panic_cpu(prog: drgn.Program) -> int:
    """The CPU that panicked (the kernel's ``panic_cpu``), else the first saved CPU."""
    symbol = kernel_symbol(prog, "panic_cpu")
    try:
        cpu = (
            -1
            if symbol is None
            else int.from_bytes(prog.read(symbol.address, 4), "little", signed=True)
        )
    except drgn.FaultError:
        cpu = -1
    saved = saved_registers(prog)
    if cpu in saved:
        return cpu
    for saved_cpu, registers in sorted(saved.items()):
        if not user_mode(registers):
            return saved_cpu
    return 0


def cpu_current_task(prog: drgn.Program, cpu: int) -> drgn.Object | None:
    """The task running on ``cpu`` (the per-cpu ``current_task``), read without looking
    up any typed global; None if it cannot be read."""
    unwinder = _unwinder(prog)
    address = unwinder._percpu_u64("current_task", cpu)
    if address is None and isinstance(unwinder, _AArch64Unwinder):
        address = unwinder._cpu_curr(cpu)  # arm64 keeps current in sp_el0 only
    if address is None:
        # Linux kernel commit e57ef2ed97c1 ("x86: Put hot per CPU variables into a
        # struct") (in v6.2) moved current_task into struct pcpu_hot.
        address = unwinder._pcpu_hot("current_task", cpu)
    if not address:
        return None
    return drgn.Object(prog, "struct task_struct *", address)


def task_cpu(task: drgn.Object) -> int:
    """The kernel's task_cpu(): the CPU a task runs or last ran on (read here: importing
    drgn.helpers.linux.sched imports all of drgn's helpers, ~30 ms of a bt)."""
    try:
        # Linux kernel commit "sched: move CPU field back into thread_info if
        # THREAD_INFO_IN_TASK=y" (in v5.16) moved it to thread_info.
        return task.thread_info.cpu.value_()
    except AttributeError:
        pass
    try:
        return task.cpu.value_()
    except AttributeError:
        return 0  # !CONFIG_SMP


def kernel_symbol(prog: drgn.Program, name: str) -> drgn.Symbol | None:
    """A kernel symbol by name, or None; a miss does not load module symbols."""
    symbols = program_symbols(prog)
    if (
        symbols is not None
        and symbols.address(name) is None
        # Without CONFIG_KALLSYMS_ALL kallsyms lists only text: a DWARF vmlinux may
        # still know a variable.
        and symbols.address("init_task") is not None
    ):
        return None
    try:
        return prog.symbol(name)
    except LookupError:
        return None


def saved_registers(prog: drgn.Program) -> dict[int, dict[str, int]]:
    """CPU number -> the registers the crash saved for it; none for a live kernel.

    The kernel writes each CPU's NT_PRSTATUS into its per-cpu ``crash_notes`` buffer,
    and /proc/vmcore lists only the CPUs that filled theirs, so the dump's notes are
    numbered by CPU only when no CPU is missing.  The buffers in memory name the CPU
    exactly; without them (a hypervisor dump) the dump's notes are taken in order.
    """
    cached = prog.cache.get("kdumpkit.cpu_registers")
    if cached is None:
        cached = _crash_notes_registers(prog)
        if not cached:
            dump: Dump | None = program_dump(prog)
            statuses = dump.prstatus if dump is not None else []
            cached = {status.cpu: status.registers for status in statuses if status.registers}
        prog.cache["kdumpkit.cpu_registers"] = cached
    return cached


def _percpu_address(per_cpu_offset: int, address: int) -> int:
    """``per_cpu_ptr()``: a per-cpu symbol's address for one CPU, modulo 2**64.

    Before Linux 6.15 x86_64 per-cpu symbols are offsets near 0 (zero-based
    .data..percpu); since "x86/percpu/64: Use relative percpu offsets" they are
    kernel-image addresses and ``__per_cpu_offset[cpu]`` is a negative distance to
    the CPU's area, so the sum wraps.
    """
    return (per_cpu_offset + address) & 0xFFFF_FFFF_FFFF_FFFF


def percpu_u64(
    prog: drgn.Program, read_u64: Callable[[int], int], name: str, cpu: int
) -> int | None:
    """The u64 per-cpu variable ``name`` of ``cpu`` (through ``__per_cpu_offset``), or
    None when a symbol is missing or the value is not in the dump."""
    offsets = kernel_symbol(prog, "__per_cpu_offset")
    symbol = kernel_symbol(prog, name)
    if offsets is None or symbol is None:
        return None
    try:
        return read_u64(_percpu_address(read_u64(offsets.address + 8 * cpu), symbol.address))
    except drgn.FaultError:
        return None


def _crash_notes_registers(prog: drgn.Program) -> dict[int, dict[str, int]]:
    from kdumpkit.dump.notes import NT_PRSTATUS, PRSTATUS_SIZES, Note, decode_prstatus

    machine = "aarch64" if prog.platform.arch == drgn.Architecture.AARCH64 else "x86_64"
    prstatus_size = PRSTATUS_SIZES[machine]

    notes = kernel_symbol(prog, "crash_notes")
    offsets = kernel_symbol(prog, "__per_cpu_offset")
    count_symbol = kernel_symbol(prog, "nr_cpu_ids")
    if notes is None or offsets is None or count_symbol is None:
        return {}
    found: dict[int, dict[str, int]] = {}
    try:
        base = prog.read_u64(notes.address)
        count = min(int.from_bytes(prog.read(count_symbol.address, 4), "little"), MAX_CPUS)
    except drgn.FaultError:
        return {}
    header = struct.Struct("<III8s")
    for cpu in range(count):
        try:
            address = (base + prog.read_u64(offsets.address + 8 * cpu)) & (2**64 - 1)
            data = prog.read(address, header.size + prstatus_size)
        except drgn.FaultError:
            continue
        namesz, descsz, note_type, name = header.unpack_from(data)
        if (namesz, note_type, name[:5]) != (5, NT_PRSTATUS, b"CORE\0") or (descsz < prstatus_size):
            continue
        status = decode_prstatus(Note("CORE", NT_PRSTATUS, data[header.size :]), cpu, machine)
        if status.registers and any(status.registers.values()):
            found[cpu] = status.registers
    return found


class _Unwinder:
    def __init__(self, prog: drgn.Program) -> None:
        self.prog = prog
        self.cpu_registers = saved_registers(prog)
        self.orc = OrcUnwindInfo(prog)
        self._kallsyms = program_symbols(prog)
        self._stacks: dict[int, _CpuStacks] = {}

    # --- memory and symbols ---------------------------------------------------------

    def read_u64(self, address: int) -> int:
        return self.prog.read_u64(address)

    def symbolize(self, pc: int, exact: bool) -> tuple[str | None, int, str | None]:
        """(function, offset from its start to pc, module) for a pc."""
        symbol = self._symbol_at(pc if exact else pc - 1)
        if symbol is None:
            return None, 0, self._module_of(pc)
        return symbol.name, pc - symbol.address, self._module_of(pc)

    def _symbol_at(self, address: int) -> drgn.Symbol | None:
        # In the kernel image, name the nearest symbol at or below the address, as
        # crash and kallsyms do: with a vmlinux, drgn's ELF symbols would name the
        # sized function around a label (entry_SYSCALL_64 for
        # entry_SYSCALL_64_after_hwframe).
        if self._kallsyms is not None and self.orc.vmlinux.covers(address):
            found = self._kallsyms.finder(self.prog, None, address, True)
            if found:
                return found[0]
        try:
            return self.prog.symbol(address)
        except (LookupError, OverflowError):
            return None

    def _module_of(self, pc: int) -> str | None:
        if self.orc.vmlinux.covers(pc):
            return None
        table = self.orc.table_for(pc)
        return table.module if table is not None else None

    def _function_start(self, pc: int) -> int | None:
        symbol = self._symbol_at(pc)
        return symbol.address if symbol is not None else None

    def is_text(self, address: int) -> bool:
        return self.orc.table_for(address) is not None

    def text_candidates(self, words: np.ndarray) -> np.ndarray:
        """Indices of the words that may be kernel or module text addresses."""
        vmlinux = self.orc.vmlinux
        in_kernel = (words >= np.uint64(vmlinux.start)) & (words < np.uint64(vmlinux.end))
        if vmlinux.hole[1] > vmlinux.hole[0]:
            in_kernel &= (words < np.uint64(vmlinux.hole[0])) | (
                words >= np.uint64(vmlinux.hole[1])
            )
        in_modules = (words >= np.uint64(MODULES_VADDR)) & (words < np.uint64(MODULES_END))
        return np.flatnonzero(in_kernel | in_modules)

    # --- stacks ---------------------------------------------------------------------

    def _percpu_u64(self, name: str, cpu: int) -> int | None:
        return percpu_u64(self.prog, self.read_u64, name, cpu)

    def _pcpu_hot(self, member: str, cpu: int) -> int | None:
        # Linux kernel commit e57ef2ed97c1 ("x86: Put hot per CPU variables into a
        # struct") and its series (in v6.2) moved hardirq_stack_ptr and top_of_stack
        # into struct pcpu_hot, which needs its BTF type.
        try:
            from drgn.helpers.linux.percpu import per_cpu

            return int(getattr(per_cpu(self.prog["pcpu_hot"], cpu), member).value_())
        except (LookupError, AttributeError, drgn.FaultError, ValueError):
            return None

    def cpu_stacks(self, cpu: int) -> _CpuStacks:
        """The IRQ and exception stacks of a CPU."""
        stacks = self._stacks.get(cpu)
        if stacks is not None:
            return stacks
        stacks = _CpuStacks()
        irq_ptr = self._percpu_u64("hardirq_stack_ptr", cpu)
        if irq_ptr is None:
            irq_ptr = self._pcpu_hot("hardirq_stack_ptr", cpu)
        if irq_ptr:
            # hardirq_stack_ptr points at the top word of the IRQ stack.
            top = irq_ptr + 8
            stacks.regions.append(StackRegion("IRQ", top - THREAD_SIZE, top))
        cea = self._percpu_u64("cea_exception_stacks", cpu)
        if cea:
            symbol = kernel_symbol(self.prog, "exception_stacks")
            count = symbol.size // EXCEPTION_STACK_SIZE if symbol is not None else 4
            stride = EXCEPTION_STACK_SIZE + 4096  # each IST stack sits above a guard page
            for index, name in enumerate(EXCEPTION_STACK_NAMES[: max(0, min(count, 6))]):
                low = cea + index * stride + 4096
                stacks.regions.append(
                    StackRegion(f"{name} exception", low, low + EXCEPTION_STACK_SIZE)
                )
        self._stacks[cpu] = stacks
        return stacks

    def active_task_stack(self, cpu: int, task: drgn.Object | None) -> StackRegion | None:
        """The stack of the task running on ``cpu``."""
        if task is not None:
            try:
                low = int(task.stack.value_())
                return StackRegion(None, low, low + THREAD_SIZE)
            except (AttributeError, drgn.FaultError):
                pass
        top = self._percpu_u64("cpu_current_top_of_stack", cpu)
        if top is None:
            top = self._pcpu_hot("top_of_stack", cpu)
        if top:
            return StackRegion(None, top - THREAD_SIZE, top)
        return None

    # --- starting points --------------------------------------------------------------

    def cpu_trace(self, cpu: int, task: drgn.Object | None = None) -> list[Frame]:
        """The trace of the task that was running on ``cpu`` at the crash."""
        if cpu not in self.cpu_registers:
            raise UnwindError(f"no saved registers for CPU {cpu}")
        regs = dict(self.cpu_registers[cpu])
        task_stack = self.active_task_stack(cpu, task)
        regions = list(self.cpu_stacks(cpu).regions)
        user = bool(regs["cs"] & 3)
        if task_stack is None and not user:
            base = regs["rsp"] & ~(THREAD_SIZE - 1)
            task_stack = StackRegion(None, base, base + THREAD_SIZE)
        if task_stack is not None:
            regions.append(task_stack)
        stacks = _CpuStacks(regions)
        start = _State(regs["rip"], regs["rsp"], regs["rbp"], regs, True, regs["rsp"])
        if not user and cpu == panic_cpu(self.prog):
            callee = self._kexec_callee(start, stacks)
            if callee is None:
                # crash_kexec(regs) after an oops saved the oops' pt_regs: the kexec
                # path still sits on the stack below them.
                callee = self._start_in(KEXEC_FUNCTION, regs, stacks)
            if callee is not None:
                return self.unwind(callee, stacks)
            if self.symbolize(start.pc, True)[0] in KEXEC_SAVERS:
                return self.unwind(start, stacks)
        else:
            stopped = self._start_in(NMI_STOP_FUNCTION, regs, stacks)
            if stopped is not None:
                return self.unwind(stopped, stacks)
        if user:
            return [
                Frame(regs["rip"], regs["rsp"], None, 0, None, True, regs, True, saved_state=True)
            ]
        # Registers taken at an arbitrary point (a hypervisor dump): crash shows them as
        # a register block and the frames from the caller on.
        frames = self.unwind(start, stacks)
        if frames and not user and cpu == panic_cpu(self.prog) and task_stack is not None:
            # crash's x86_64_get_dumpfile_stack_frame(): with no kexec frames (QEMU's
            # dump-guest-memory of a panicked guest) the panic task's trace starts at the
            # highest word of its stack that points into panic().
            slot = self._highest_slot_in("panic", task_stack)
            kept = [i for i, frame in enumerate(frames) if frame.sp == slot]
            if kept and frames[kept[0]].function == "panic":
                return frames[kept[0] :]
        if frames:
            frames[0].is_exception_frame = True
            frames[0].registers = regs
            frames[0].saved_state = True
        return frames

    def _kexec_callee(self, start: _State, stacks: _CpuStacks) -> _State | None:
        name, _, _ = self.symbolize(start.pc, True)
        if name not in KEXEC_SAVERS:
            return None
        region = stacks.find(start.sp)
        if region is None:
            return None
        try:
            caller_ret = self.read_u64(start.sp - 8)
        except drgn.FaultError:
            return None
        if self._function_start(caller_ret - 1) != self._function_start(start.pc):
            return None
        low = max(region.low, start.sp - 8 * SCAN_WORDS)
        words = self._stack_words(low, start.sp - 8)
        # The most recent callee overwrote the top of the area: prefer the highest slot.
        for index in self.text_candidates(words)[::-1].tolist():
            value = int(words[index])
            if not self.is_text(value):
                continue
            slot = low + 8 * index
            entry = self.orc.find(value - 1)
            if (
                entry is not None
                and entry.type == ORC_TYPE_CALL
                and entry.sp_reg == ORC_REG_SP
                and slot + 8 + entry.sp_offset == start.sp
            ):
                return _State(value, slot + 8, None, None, False, slot)
        return None

    def _start_in(self, function: str, regs: dict[str, int], stacks: _CpuStacks) -> _State | None:
        """A frame of ``function`` left on the CPU's stacks from which ORC unwinds to
        the very pt_regs the dump saved for the CPU (the highest such slot)."""
        symbol = kernel_symbol(self.prog, function)
        if symbol is None:
            return None
        lo, hi = symbol.address, symbol.address + max(symbol.size, 1)
        for region in stacks.regions:
            if region.name not in (None, "NMI exception"):
                continue
            words = self._stack_words(region.low, region.high)
            hits = np.flatnonzero((words > lo) & (words <= hi))
            for index in hits[::-1]:
                slot = region.low + 8 * int(index)
                state = _State(int(words[index]), slot + 8, None, None, False, slot)
                if self._reaches_regs(state, stacks, regs):
                    return state
        return None

    def _highest_slot_in(self, function: str, region: StackRegion) -> int | None:
        """The highest slot of ``region`` holding an address inside ``function``."""
        symbol = kernel_symbol(self.prog, function)
        if symbol is None:
            return None
        words = self._stack_words(region.low, region.high)
        hits = np.flatnonzero(
            (words > symbol.address) & (words < symbol.address + max(symbol.size, 1))
        )
        return region.low + 8 * int(hits[-1]) if len(hits) else None

    def _reaches_regs(self, state: _State, stacks: _CpuStacks, regs: dict[str, int]) -> bool:
        for frame in self.unwind(state, stacks, max_frames=24):
            if frame.registers is not None:
                saved = frame.registers
                return saved["rip"] == regs["rip"] and saved["rsp"] == regs["rsp"]
        return False

    def _stack_words(self, low: int, high: int) -> np.ndarray:
        if high <= low:
            return np.zeros(0, dtype="<u8")
        try:
            return np.frombuffer(self.prog.read(low, high - low), dtype="<u8")
        except drgn.FaultError:
            return np.zeros(0, dtype="<u8")

    def task_trace(self, task: drgn.Object) -> list[Frame]:
        """The trace of a task: from its CPU's registers if it was running, else from
        ``thread.sp``."""
        task = task.read_()
        cpu = self._active_cpu(task)
        if cpu is not None:
            return self.cpu_trace(cpu, task)
        try:
            thread_sp = int(task.thread.sp.value_())
            low = int(task.stack.value_())
        except (AttributeError, drgn.FaultError) as exc:
            raise UnwindError(f"cannot read the task's saved stack pointer: {exc}") from None
        if not low:
            # An exited task's stack is freed (put_task_stack() clears task->stack).
            raise UnwindError("the task has no kernel stack (it has exited)")
        if not low <= thread_sp < low + THREAD_SIZE:
            raise UnwindError(
                f"the task's saved stack pointer {thread_sp:#x} is outside its stack {low:#x}"
            )
        stacks = _CpuStacks([StackRegion(None, low, low + THREAD_SIZE)])
        ret_offset, bp_offset = self._inactive_frame_layout()
        try:
            ret_addr = self.read_u64(thread_sp + ret_offset)
            bp = self.read_u64(thread_sp + bp_offset)
        except drgn.FaultError as exc:
            raise UnwindError(f"the task's stack is not in the dump: {exc}") from None
        slot = thread_sp + ret_offset
        return self.unwind(_State(ret_addr, slot + 8, bp, None, False, slot), stacks)

    def _inactive_frame_layout(self) -> tuple[int, int]:
        try:
            frame_type = self.prog.type("struct inactive_task_frame")
            return (drgn.offsetof(frame_type, "ret_addr"), drgn.offsetof(frame_type, "bp"))
        except LookupError:
            # x86_64 layout since Linux kernel commit 0100301bfdf5 ("sched/x86: Rewrite
            # the switch_to() code") (in v4.9): r15 r14 r13 r12 bx bp ret_addr.
            return 48, 40

    def _active_cpu(self, task: drgn.Object) -> int | None:
        try:
            cpu = task_cpu(task)
            if cpu in self.cpu_registers and self._cpu_curr(cpu) == task.value_():
                return cpu
        except (LookupError, AttributeError, drgn.FaultError, ValueError):
            pass
        return None

    def _cpu_curr(self, cpu: int) -> int | None:
        """The kernel's cpu_curr(cpu): the address of the task its runqueue runs (read
        here: importing drgn.helpers.linux.sched imports all of drgn's helpers, ~30 ms)."""
        offsets = kernel_symbol(self.prog, "__per_cpu_offset")
        runqueues = kernel_symbol(self.prog, "runqueues")
        if offsets is None or runqueues is None:
            return None
        curr = drgn.offsetof(self.prog.type("struct rq"), "curr")
        base = self.read_u64(offsets.address + 8 * cpu)
        return self.read_u64(_percpu_address(base, runqueues.address + curr))

    # --- the unwinder -----------------------------------------------------------------

    def unwind(
        self, start: _State, stacks: _CpuStacks, max_frames: int = MAX_FRAMES
    ) -> list[Frame]:
        """Frames from ``start`` until the end of the stack or the bounds."""
        frames: list[Frame] = []
        state: _State | None = start
        switches = 0
        seen: set[tuple[int, int]] = set()
        while state is not None and len(frames) < max_frames:
            if (state.pc, state.sp) in seen:
                break
            seen.add((state.pc, state.sp))
            name, offset, module = self.symbolize(state.pc, state.signal)
            region = stacks.find(state.slot)
            frame = Frame(
                state.pc,
                state.slot,
                name,
                offset,
                module,
                stack=region.name if region is not None else None,
            )
            if frames and frames[-1].is_exception_frame and frames[-1].stack == frame.stack:
                # crash lists the interrupted code as a frame of its own only after a
                # stack switch (``--- <NMI exception stack> ---``).
                frame.interrupted = True
            frames.append(frame)
            try:
                if self.is_text(state.pc):
                    nxt = self._step(state, frame, stacks)
                else:
                    # Code with no ORC at all (BPF JIT images, which push rbp and set
                    # it up as every JIT prologue does): follow the frame pointer.
                    nxt = self._frame_pointer_step(state, stacks)
            except drgn.FaultError:
                break
            if nxt is None:
                break
            old_region = stacks.find(state.sp)
            new_region = stacks.find(nxt.sp)
            if new_region is None and stacks.regions:
                break
            if old_region == new_region:
                if nxt.sp <= state.sp and not frame.is_exception_frame:
                    break  # a stack only grows upwards when unwinding
            else:
                switches += 1
                if switches > MAX_STACK_SWITCHES:
                    break
                if not frame.is_exception_frame:
                    # Leaving an IRQ stack by its saved stack pointer: crash shows the
                    # caller's frame at that pointer's CFA, not at the return slot.
                    nxt.slot = nxt.sp
            state = nxt
        return frames

    def _step(self, state: _State, frame: Frame, stacks: _CpuStacks) -> _State | None:
        entry = self.orc.find(state.pc if state.signal else state.pc - 1)
        if entry is None or entry.sp_reg == ORC_REG_UNDEFINED:
            if entry is not None and entry.type == ORC_TYPE_END_OF_STACK:
                return None
            return self._scan_for_caller(state, stacks)
        if entry.type == ORC_TYPE_END_OF_STACK:
            return None
        cfa = self._cfa(entry, state)
        if cfa is None:
            return None
        if entry.type == ORC_TYPE_CALL:
            ret = self.read_u64(cfa - 8)
            return _State(ret, cfa, self._caller_bp(entry, state, cfa), None, False, cfa - 8)
        if entry.type in (ORC_TYPE_REGS, ORC_TYPE_REGS_PARTIAL):
            base = cfa if entry.type == ORC_TYPE_REGS else cfa - IRET_FRAME_OFFSET
            regs = self._read_pt_regs(base)
            frame.is_exception_frame = True
            frame.registers = regs
            if regs["cs"] & 3:
                frame.user_mode = True
                return None
            full = entry.type == ORC_TYPE_REGS
            bp = regs["rbp"] if full else state.bp
            return _State(regs["rip"], regs["rsp"], bp, regs if full else None, True, regs["rsp"])
        return None

    def _frame_pointer_step(self, state: _State, stacks: _CpuStacks) -> _State | None:
        """The caller of a frame with no ORC, by its frame record at ``rbp``."""
        if state.bp is None:
            return None
        record = read_frame_record(self.read_u64, state.bp, stacks, above=state.sp - 8)
        if record is None or not record.return_address:
            return None
        sp = record.address + 16
        return _State(record.return_address, sp, record.next_fp, None, False, sp - 8)

    def _cfa(self, entry: OrcEntry, state: _State) -> int | None:
        reg = entry.sp_reg
        if reg == ORC_REG_SP:
            return state.sp + entry.sp_offset
        if reg == ORC_REG_BP:
            return None if state.bp is None else state.bp + entry.sp_offset
        if reg == ORC_REG_SP_INDIRECT:
            # As in the kernel's unwind_orc.c: dereference first, then add the offset
            # (call_on_irqstack() saves the old RSP at the top of the new stack).
            return self.read_u64(state.sp) + entry.sp_offset
        if reg == ORC_REG_BP_INDIRECT:
            return None if state.bp is None else self.read_u64(state.bp + entry.sp_offset)
        names = {ORC_REG_R10: "r10", ORC_REG_R13: "r13", ORC_REG_DI: "rdi", ORC_REG_DX: "rdx"}
        if reg in names and state.regs is not None:
            return state.regs[names[reg]] + entry.sp_offset
        return None

    def _caller_bp(self, entry: OrcEntry, state: _State, cfa: int) -> int | None:
        if entry.bp_reg == ORC_REG_PREV_SP:
            return self.read_u64(cfa + entry.bp_offset)
        if entry.bp_reg == ORC_REG_BP:
            return None if state.bp is None else self.read_u64(state.bp + entry.bp_offset)
        return state.bp

    def _read_pt_regs(self, address: int) -> dict[str, int]:
        data = self.prog.read(address, PT_REGS_SIZE)
        values = struct.unpack(f"<{len(PT_REGS_NAMES)}Q", data)
        return dict(zip(PT_REGS_NAMES, values, strict=True))

    def _scan_for_caller(self, state: _State, stacks: _CpuStacks) -> _State | None:
        """A caller for a function without ORC: the first return address up the stack
        whose preceding instruction is ``call rel32`` to this function."""
        target = self._function_start(state.pc if state.signal else state.pc - 1)
        region = stacks.find(state.sp)
        if target is None or region is None:
            return None
        high = min(region.high, state.sp + 8 * SCAN_WORDS)
        words = self._stack_words(state.sp, high)
        for index in self.text_candidates(words).tolist():
            value = int(words[index])
            if not self.is_text(value):
                continue
            try:
                code = self.prog.read(value - 5, 5)
            except drgn.FaultError:
                continue
            if code[0] == 0xE8:
                rel = int.from_bytes(code[1:], "little", signed=True)
                if (value + rel) & 0xFFFFFFFFFFFFFFFF == target:
                    slot = state.sp + 8 * index
                    bp = self._bp_pushed_by(target, slot)
                    return _State(
                        value, slot + 8, state.bp if bp is None else bp, None, False, slot
                    )
        return None

    def _bp_pushed_by(self, function: int, return_slot: int) -> int | None:
        """The caller's rbp that ``function`` pushed in its prologue, read from just below
        its return address, or None if the prologue does not push rbp.

        A function that objtool does not describe (5.10's __crash_kexec: its
        crash_setup_regs() points rbp at the saved registers) has no ORC, and a caller
        that addresses its frame by rbp (panic) needs its own rbp back."""
        import capstone
        from capstone import x86_const

        try:
            code = self.prog.read(function, PROLOGUE_BYTES)
        except drgn.FaultError:
            return None
        decoder = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        decoder.detail = True
        pushes = 0
        for insn in decoder.disasm(code, function):
            if insn.id == x86_const.X86_INS_PUSH:
                pushes += 1
                operand = insn.operands[0]
                if operand.type == x86_const.X86_OP_REG and operand.reg == x86_const.X86_REG_RBP:
                    return self.read_u64(return_slot - 8 * pushes)
            elif insn.id == x86_const.X86_INS_SUB or any(
                insn.group(group)
                for group in (capstone.CS_GRP_JUMP, capstone.CS_GRP_CALL, capstone.CS_GRP_RET)
            ):
                break  # the frame is allocated, or the code goes elsewhere
        return None


def _is_section_marker(name: str) -> bool:
    """Whether a symbol is a linker-script marker (``_stext``, ``__entry_text_start``)."""
    return name in ("_text", "_stext", "_etext", "_sinittext", "_einittext") or (
        name.startswith("__") and name.endswith(("_start", "_end"))
    )


class _AArch64Unwinder:
    """arm64 stack traces: frame records (x29 chains; arm64 always builds with frame
    pointers and has no ORC), pointer-authentication bits stripped with
    ``NUMBER(KERNELPACMASK)``, exception frames from the frame record inside
    ``struct pt_regs`` (``stackframe``)."""

    def __init__(self, prog: drgn.Program) -> None:
        self.prog = prog
        self.cpu_registers = saved_registers(prog)
        dump: Dump | None = program_dump(prog)
        info = dump.vmcoreinfo if dump is not None else None
        self.pac_mask = ((info.number("KERNELPACMASK") if info else None) or 0) & (2**64 - 1)
        page_size = (info.page_size if info else None) or 4096
        self.thread_size = max(AARCH64_MIN_THREAD_SIZE, page_size)
        symbols = program_symbols(prog)
        self._kallsyms = symbols if hasattr(symbols, "finder") else None
        self._text: list[tuple[int, int]] = []
        for start, end in (("_stext", "_etext"), ("_sinittext", "_einittext")):
            low, high = kernel_symbol(prog, start), kernel_symbol(prog, end)
            if low is not None and high is not None:
                self._text.append((low.address, high.address))
        modules = (info.number("MODULES_VADDR"), info.number("MODULES_END")) if info else ()
        if len(modules) == 2 and modules[0] is not None and modules[1] is not None:
            self._text.append((modules[0] & (2**64 - 1), modules[1] & (2**64 - 1)))
        self._stacks: dict[int, _CpuStacks] = {}
        try:
            regs_type = prog.type("struct pt_regs")
            self.stackframe_offset = drgn.offsetof(regs_type, "stackframe")
        except (LookupError, ValueError):
            self.stackframe_offset = AARCH64_PT_REGS_STACKFRAME

    # --- memory and symbols ---------------------------------------------------------

    def read_u64(self, address: int) -> int:
        return self.prog.read_u64(address)

    def strip_pac(self, address: int) -> int:
        """A return address without its pointer-authentication code (kernel addresses
        have every PAC bit set once stripped)."""
        return address | self.pac_mask if self.pac_mask else address

    def is_text(self, address: int) -> bool:
        return any(low <= address < high for low, high in self._text)

    def symbolize(self, pc: int, exact: bool) -> tuple[str | None, int, str | None]:
        """(function, offset from its start to pc, module) for a pc."""
        address = pc if exact else pc - 1
        symbol = None
        if self._kallsyms is not None:
            found = self._kallsyms.finder(self.prog, None, address, False)
            # Where a function starts a section, crash names the function, not the
            # section's marker (gic_handle_irq, not _stext or __irqentry_text_start).
            named = [s for s in found if not _is_section_marker(s.name)]
            symbol = (named or found or [None])[0]
        if symbol is None:
            try:
                symbol = self.prog.symbol(address)
            except (LookupError, OverflowError):
                return None, 0, None
        return symbol.name, pc - symbol.address, None

    def _percpu_u64(self, name: str, cpu: int) -> int | None:
        return percpu_u64(self.prog, self.read_u64, name, cpu)

    def _cpu_curr(self, cpu: int) -> int | None:
        """The kernel's cpu_curr(cpu)."""
        offsets = kernel_symbol(self.prog, "__per_cpu_offset")
        runqueues = kernel_symbol(self.prog, "runqueues")
        if offsets is None or runqueues is None:
            return None
        try:
            curr = drgn.offsetof(self.prog.type("struct rq"), "curr")
            base = self.read_u64(offsets.address + 8 * cpu)
            return self.read_u64(_percpu_address(base, runqueues.address + curr))
        except (LookupError, drgn.FaultError):
            return None

    # --- stacks ---------------------------------------------------------------------

    def cpu_stacks(self, cpu: int) -> _CpuStacks:
        """The IRQ stack of a CPU (``irq_stack_ptr``, THREAD_SIZE bytes)."""
        stacks = self._stacks.get(cpu)
        if stacks is None:
            stacks = _CpuStacks()
            base = self._percpu_u64("irq_stack_ptr", cpu)
            if base:
                stacks.regions.append(StackRegion("IRQ", base, base + self.thread_size))
            self._stacks[cpu] = stacks
        return stacks

    def _task_stack(self, task: drgn.Object | None, sp: int | None) -> StackRegion | None:
        if task is not None:
            try:
                low = int(task.stack.value_())
                if low:
                    return StackRegion(None, low, low + self.thread_size)
            except (AttributeError, drgn.FaultError):
                pass
        if sp is None:
            return None
        # Stacks are THREAD_SIZE-aligned (THREAD_ALIGN is twice that with VMAP_STACK).
        low = sp & ~(self.thread_size - 1)
        return StackRegion(None, low, low + self.thread_size)

    # --- starting points --------------------------------------------------------------

    def cpu_trace(self, cpu: int, task: drgn.Object | None = None) -> list[Frame]:
        """The trace of what ``cpu`` ran at the crash, from its NT_PRSTATUS registers."""
        if cpu not in self.cpu_registers:
            raise UnwindError(f"no saved registers for CPU {cpu}")
        regs = dict(self.cpu_registers[cpu])
        regions = list(self.cpu_stacks(cpu).regions)
        own = self._task_stack(task, None if user_mode(regs) else regs["sp"])
        if own is not None and own not in regions:
            regions.append(own)
        stacks = _CpuStacks(regions)
        if user_mode(regs):
            saved = Frame(regs["pc"], regs["sp"], None, 0, None, True, regs, True, saved_state=True)
            # The IPI that stopped the CPU left its handler's frames on the IRQ stack,
            # down to the EL0 exception frame holding these very registers.
            handler = self._stale_chain(stacks, regs)
            if handler:
                saved.hidden = True
                return [*handler, saved]
            return [saved]
        frames = self.unwind(regs["pc"], regs["sp"], regs["x29"], stacks, exact=True)
        if frames and cpu == panic_cpu(self.prog):
            kexec = self._machine_kexec_frame(stacks, regs)
            if kexec is not None:
                frame, call_return = kexec
                frames[0].display_pc = call_return - 4
                frames[0].sp = regs["x29"]
                frames.insert(0, frame)
        return frames

    def _records_below(self, stacks: _CpuStacks, high: int | None = None) -> list[FrameRecord]:
        """Every plausible frame record (16-byte aligned, a text return address) on the
        given stacks, below ``high`` when given, lowest first."""
        found = []
        for region in stacks.regions:
            top = region.high if high is None or high not in region else high
            words = self._stack_words(region.low, top)
            for index in range(0, len(words) - 1, 2):
                ret = self.strip_pac(int(words[index + 1])) if words[index + 1] else 0
                if ret and self.is_text(ret):
                    found.append(FrameRecord(region.low + 8 * index, int(words[index]), ret))
        return sorted(found, key=lambda r: r.address)

    def _stack_words(self, low: int, high: int) -> np.ndarray:
        if high <= low:
            return np.zeros(0, dtype="<u8")
        try:
            return np.frombuffer(self.prog.read(low, high - low), dtype="<u8")
        except drgn.FaultError:
            return np.zeros(0, dtype="<u8")

    def _machine_kexec_frame(
        self, stacks: _CpuStacks, regs: dict[str, int]
    ) -> tuple[Frame, int] | None:
        """machine_kexec()'s frame below the panic CPU's saved registers, as crash shows
        it, and the address its call returns to in the saver (``__crash_kexec``)."""
        saver = self.symbolize(regs["pc"], True)[0]
        records = self._records_below(stacks, regs["sp"])
        for record in records:
            if record.next_fp != regs["x29"]:
                continue
            if self.symbolize(record.return_address, False)[0] != saver:
                continue
            # machine_kexec()'s last call left the record right under its own.
            callees = [r for r in records if r.next_fp == record.address]
            if not callees:
                continue
            callee = callees[-1]
            name, offset, module = self.symbolize(callee.return_address, False)
            if name != KEXEC_FUNCTION:
                continue
            frame = Frame(callee.return_address, record.address, name, offset, module)
            frame.display_pc, frame.stale = callee.return_address - 4, True
            return frame, record.return_address
        return None

    def _stale_chain(self, stacks: _CpuStacks, regs: dict[str, int]) -> list[Frame]:
        """The deepest chain of frame records on the CPU's IRQ stack that unwinds to an
        exception frame holding ``regs`` (what the crash-stop IPI interrupted)."""
        irq = _CpuStacks([r for r in stacks.regions if r.name is not None])
        for record in self._records_below(irq):
            frames = self.unwind(
                record.return_address, record.next_fp, record.next_fp, stacks, exact=False
            )
            last = frames[-1] if frames else None
            if (
                last is not None
                and last.registers is not None
                and last.registers["pc"] == regs["pc"]
                and last.registers["sp"] == regs["sp"]
            ):
                for frame in frames:
                    frame.stale = True
                return frames
        return []

    def task_trace(self, task: drgn.Object) -> list[Frame]:
        """A task's trace: from its CPU's registers if it was running, else from the
        context ``cpu_switch_to()`` saved in ``thread.cpu_context``."""
        task = task.read_()
        cpu = self._active_cpu(task)
        if cpu is not None:
            return self.cpu_trace(cpu, task)
        try:
            context = task.thread.cpu_context
            pc, sp, fp = (int(context.pc), int(context.sp), int(context.fp))
        except (AttributeError, drgn.FaultError) as exc:
            raise UnwindError(f"cannot read the task's saved context: {exc}") from None
        region = self._task_stack(task, None)
        if region is None:
            raise UnwindError("the task has no kernel stack (it has exited)")
        if sp not in region:
            raise UnwindError(f"the task's saved stack pointer {sp:#x} is outside its stack")
        return self.unwind(self.strip_pac(pc), sp, fp, _CpuStacks([region]), exact=False)

    def _active_cpu(self, task: drgn.Object) -> int | None:
        try:
            cpu = task_cpu(task)
            if cpu in self.cpu_registers and self._cpu_curr(cpu) == task.value_():
                return cpu
        except (LookupError, AttributeError, drgn.FaultError, ValueError):
            pass
        return None

    # --- the unwinder -----------------------------------------------------------------

    def _read_pt_regs(self, address: int) -> dict[str, int]:
        data = self.prog.read(address, 8 * len(AARCH64_PT_REGS_NAMES))
        values = struct.unpack(f"<{len(AARCH64_PT_REGS_NAMES)}Q", data)
        return dict(zip(AARCH64_PT_REGS_NAMES, values, strict=True))

    def _exception_regs(self, record: FrameRecord) -> dict[str, int] | None:
        """The pt_regs whose ``stackframe`` is this frame record, if it is one: the
        entry code stores the interrupted x29 and pc there (or, since 6.13, zeroes it
        and marks it FRAME_META_TYPE_PT_REGS); a task's last record, in the pt_regs at
        the top of its stack, is zero (FRAME_META_TYPE_FINAL since 6.13)."""
        try:
            regs = self._read_pt_regs(record.address - self.stackframe_offset)
            meta = self.read_u64(record.address + 16)
        except drgn.FaultError:
            return None
        if record.next_fp == 0 and record.return_address == 0:
            # Zeroed registers (a kernel thread's or the idle task's) are no user state.
            live = regs["pc"] or regs["sp"]
            if meta == FRAME_META_TYPE_PT_REGS or (live and user_mode(regs)):
                return regs
            return None
        if regs["pc"] == record.return_address and regs["x29"] == record.next_fp:
            return regs
        return None

    def unwind(self, pc: int, sp: int, fp: int, stacks: _CpuStacks, *, exact: bool) -> list[Frame]:
        """Frames from ``pc`` (``exact``: not a return address) up the frame records
        from ``fp``, until a zero record, user registers or the bounds."""
        frames: list[Frame] = []
        above = sp - 1
        switches = 0
        while len(frames) < MAX_FRAMES:
            name, offset, module = self.symbolize(pc, exact)
            region = stacks.find(sp)
            # crash shows a frame at its frame record (x29), the first one at its sp.
            shown = fp if frames and fp else sp
            region = stacks.find(shown) or region
            frame = Frame(pc, shown, name, offset, module, stack=region.name if region else None)
            if not exact:
                frame.display_pc = pc - 4
            frames.append(frame)
            record = read_frame_record(self.read_u64, fp, stacks, above=above, strip=self.strip_pac)
            if record is None:
                break
            if stacks.find(record.address) != stacks.find(above):
                switches += 1
                if switches > MAX_STACK_SWITCHES:
                    break
            regs = self._exception_regs(record)
            if regs is not None:
                if not regs["pc"] and not user_mode(regs):
                    frame.hidden = True  # a kernel thread's final (zeroed) pt_regs
                    break
                frame.is_exception_frame = True
                frame.registers = regs
                if user_mode(regs):
                    frame.user_mode = True
                    break
                pc, sp, fp, exact = regs["pc"], regs["sp"], regs["x29"], True
                above = record.address
                continue
            if not record.return_address:
                frame.hidden = not record.next_fp
                break
            pc, sp, fp, exact = record.return_address, record.address + 16, record.next_fp, False
            above = record.address
        return frames
