"""crash 9.0.2's text shapes, in one place: dates, uptimes, sizes, the label: value
blocks of ``sys`` and ``set``, task headers, ``ps`` rows, log lines, register blocks
and frame lines.  Pure functions of values and facts records: nothing here reads
the dump."""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import drgn

    from kdumpkit.analyze.facts.fs import MountInfo, OpenFile, TaskFiles
    from kdumpkit.analyze.facts.ipc import IpcObject
    from kdumpkit.analyze.facts.irq import IrqAffinity, IrqCounts, SoftirqAction
    from kdumpkit.analyze.facts.log import LogRecord
    from kdumpkit.analyze.facts.mm import TaskMemory, Vma
    from kdumpkit.analyze.facts.modules import ModuleInfo
    from kdumpkit.analyze.facts.net import NetDevice
    from kdumpkit.analyze.facts.signals import PendingSignals, SignalAction, TaskSignals
    from kdumpkit.analyze.facts.swap import SwapDevice
    from kdumpkit.analyze.facts.system import SystemInfo
    from kdumpkit.analyze.facts.tasks import ProcessEntry, TaskContext
    from kdumpkit.analyze.facts.timers import TimerBase
    from kdumpkit.analyze.stack import Frame

GIGABYTE = 1 << 30
#: crash reports memory as the next whole gigabyte when it is this close to it
ROUND_UP_SLACK = 64 << 20
#: what ``sys`` says for KERNEL when no vmlinux was given
NO_VMLINUX = "(none: types from BTF, symbols from kallsyms)"


# --- crash's field justification -------------------------------------------------------------

#: crash's VADDR_PRLEN on a 64-bit kernel
VADDR_PRLEN = 16


def mkstring(text: str, size: int, *, center: bool = False, rjust: bool = False) -> str:
    """crash's ``mkstring()``: ``text`` in a field of ``size`` (never cut): centred
    (the odd space to the right, or with ``rjust`` to the left), right- or
    left-justified."""
    extra = size - len(text)
    if extra <= 0:
        return text
    if center:
        left = extra // 2 + (extra % 2 if rjust else 0)
        return " " * left + text + " " * (extra - left)
    return " " * extra + text if rjust else text + " " * extra


# --- numbers, sizes, times ----------------------------------------------------------------


def date_text(timestamp: int) -> str:
    """``Thu Nov 26 08:41:23 UTC 2026``."""
    when = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return when.strftime("%a %b %e %H:%M:%S UTC %Y")


def uptime_text(seconds: int) -> str:
    """``00:00:05`` or ``3 days, 01:02:03``."""
    days, rest = divmod(int(seconds), 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days} days, {text}" if days else text


def elapsed_text(nanoseconds: int) -> str:
    """``D HH:MM:SS.mmm`` (``ps -m``, ``runq -m``)."""
    days, rest = divmod(nanoseconds, 86400 * 10**9)
    hours, rest = divmod(rest, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    seconds, rest = divmod(rest, 10**9)
    return f"{days} {hours:02d}:{minutes:02d}:{seconds:02d}.{rest // 10**6:03d}"


def size_text(nbytes: float) -> str:
    """A byte count as crash prints it: ``717 MB``, ``659.2 MB``, ``1 GB``, ``0``."""
    if nbytes == 0:
        return "0"
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if nbytes >= scale:
            text = f"{nbytes / scale:.1f}"
            if text.endswith(".0"):
                text = text[:-2]
            return f"{text} {unit}"
    return f"{int(nbytes)} bytes"


def memory_text(total: int) -> str:
    """``sys``'s MEMORY: a total just under a gigabyte boundary is rounded up to it."""
    next_gig = -(-total // GIGABYTE) * GIGABYTE
    if next_gig - total <= ROUND_UP_SLACK:
        total = next_gig
    return size_text(total)


# --- label: value blocks ------------------------------------------------------------------


def format_pairs(pairs: Sequence[tuple[str, str]], width: int = 12) -> str:
    """Labels right-aligned to ``width`` columns (``sys``'s 12), then ``: value``."""
    return "".join(f"{label:>{width}}: {value}\n" for label, value in pairs)


def dump_flags_text(flags: str | None) -> str:
    """``  [PARTIAL DUMP]`` after DUMPFILE, or nothing."""
    return f"  [{flags}]" if flags else ""


def sys_pairs(info: SystemInfo) -> list[tuple[str, str]]:
    """``sys``'s (label, value) pairs in crash's order."""
    kernel = info.kernel or NO_VMLINUX
    if info.tainted:
        kernel += "  [TAINTED]"
    cpus = str(info.cpus)
    if info.offline_cpus:
        cpus += f" [OFFLINE: {info.offline_cpus}]"
    machine = info.machine
    if info.mhz:
        machine += f"  ({info.mhz} Mhz)"
    elif info.machine == "aarch64":
        machine += "  (unknown Mhz)"  # crash 9.0.2 reads no clock rate from an arm64 dump
    pairs = [
        ("KERNEL", kernel),
        ("DUMPFILE", (info.dumpfile or "") + dump_flags_text(info.dump_flags)),
        ("CPUS", cpus),
        ("DATE", date_text(info.timestamp)),
        ("UPTIME", uptime_text(info.uptime_seconds)),
        ("LOAD AVERAGE", info.load_average),
        ("TASKS", str(info.tasks)),
        ("NODENAME", info.nodename),
        ("RELEASE", info.release),
        ("VERSION", info.version),
        ("MACHINE", machine),
        ("MEMORY", memory_text(info.memory_bytes)),
    ]
    if info.panic is not None:
        pairs.append(("PANIC", f'"{info.panic}"'))
    return pairs


def state_text(name: str, activity: str | None) -> str:
    """``TASK_RUNNING (PANIC)``; crash leaves the space before an absent annotation."""
    return f"{name} ({activity})" if activity else f"{name} "


def context_pairs(context: TaskContext) -> list[tuple[str, str]]:
    """crash's task context block: PID, COMMAND, TASK, CPU, STATE."""
    return [
        ("PID", str(context.pid)),
        ("COMMAND", f'"{context.comm}"'),
        ("TASK", f"{context.task:x}  [THREAD_INFO: {context.thread_info:x}]"),
        ("CPU", str(context.cpu)),
        ("STATE", state_text(context.state, context.activity)),
    ]


def context_block(context: TaskContext) -> str:
    """``set``'s context display, labels right-aligned to ``COMMAND``."""
    return format_pairs(context_pairs(context), width=7)


# --- task headers and ps -------------------------------------------------------------------


def task_header(pid: int, task: int, cpu: int, comm: str) -> str:
    """The task header of ``ps -p/-c/-t/-l``:
    ``PID: 1        TASK: ...  CPU: 0    COMMAND: "init"``."""
    return f'PID: {pid:<8} TASK: {task:x}  CPU: {cpu:<3}  COMMAND: "{comm}"'


def bt_task_header(pid: int, task: int, cpu: int, comm: str) -> str:
    """``bt``'s header: ``PID: 134      TASK: ffff...  CPU: 0    COMMAND: "..."``."""
    return f'PID: {pid:<7}  TASK: {task:<16x}  CPU: {cpu:<3}  COMMAND: "{comm}"'


def runq_task_line(pid: int, task: int, comm: str) -> str:
    """``runq``'s ``PID: 1      TASK: ...  COMMAND: "..."``."""
    return f'PID: {pid:<6} TASK: {task:x}  COMMAND: "{comm}"'


PS_HEADER = "      PID    PPID  CPU       TASK        ST  %MEM      VSZ      RSS  COMM"


def ps_row(entry: ProcessEntry) -> str:
    """crash's ``ps`` line; ``>`` marks the task running on its CPU."""
    comm = f"[{entry.comm}]" if entry.kernel_thread else entry.comm
    marker = ">" if entry.active else " "
    return (
        f"{marker}{entry.pid:>8}{entry.ppid:>8}{entry.cpu:>4}  {entry.task:016x}"
        f"  {entry.state}{entry.mem_percent:>6.1f}{entry.vsz_kb:>9}{entry.rss_kb:>9}"
        f"  {comm}"
    )


def ps_entry_header(entry: ProcessEntry) -> str:
    """:func:`task_header` of a ``ps`` entry."""
    return task_header(entry.pid, entry.task, entry.cpu, entry.comm)


# --- memory and filesystems --------------------------------------------------------------------

SWAP_HEADER = "SWAP_INFO_STRUCT    TYPE       SIZE       USED     PCT  PRI  FILENAME"


def swap_row(device: SwapDevice, page_kb: int) -> str:
    """One ``swap`` line (memory.c dump_swap_info())."""
    size_kb, used_kb = device.pages * page_kb, device.used_pages * page_kb
    percent = used_kb * 100 // size_kb if size_kb else 0
    return "  ".join(
        [
            mkstring(f"{device.address:x}", len("SWAP_INFO_STRUCT"), center=True),
            " ".join(
                [
                    "PARTITION" if device.partition else "  FILE   ",
                    mkstring(f"{size_kb}k", 10, center=True, rjust=True),
                    mkstring(f"{used_kb}k", 10, center=True, rjust=True),
                    mkstring(f"{percent:2d}%", 4, center=True, rjust=True),
                    mkstring(str(device.priority), 4, rjust=True),
                ]
            ),
            device.filename,
        ]
    )


#: ``mount``'s DEVNAME field: strlen("DEVNAME") + 2
_DEVNAME_WIDTH = 9

MOUNT_HEADER = " ".join(
    [
        mkstring("MOUNT", VADDR_PRLEN, center=True),
        mkstring("SUPERBLK", VADDR_PRLEN, center=True),
        mkstring("TYPE", len("rootfs")),
        mkstring("DEVNAME", _DEVNAME_WIDTH),
        "DIRNAME",
    ]
)


def mount_row(mount: MountInfo) -> str:
    """One ``mount`` line (filesys.c show_mounts()): TYPE and DEVNAME padded, then
    trailing spaces given back while the two are longer than 17 columns."""
    names = f"{mount.fstype:<6} " + mkstring(mount.devname, _DEVNAME_WIDTH) + " "
    while len(names) > 17 and names[-2] == " ":
        names = names[:-1]
    return f"{mount.mount:16x} {mount.super_block:16x} {names}{mount.dirname:<10}"


FILES_HEADER = " ".join(
    [
        " FD",
        mkstring("FILE", VADDR_PRLEN, center=True),
        mkstring("DENTRY", VADDR_PRLEN, center=True),
        mkstring("INODE", VADDR_PRLEN, center=True),
        "TYPE",
        "PATH",
    ]
)


def root_cwd_line(root: str, cwd: str) -> str:
    """``files``' ``ROOT: /    CWD: /``."""
    return f"ROOT: {root}    CWD: {cwd}"


def open_file_row(file: OpenFile) -> str:
    """One ``files`` line (filesys.c file_dump()); an empty dentry or inode shows as
    zeros and ``?``."""

    def address(value: int) -> str:
        return mkstring(f"{value:x}", VADDR_PRLEN, center=True, rjust=True)

    if not file.dentry:
        cells = [address(file.file), f"{0:016x}", mkstring("?", VADDR_PRLEN, center=True)]
        return f"{file.fd:3d} " + " ".join([*cells, "?   ", "?"])
    if not file.inode:
        cells = [address(file.file), address(file.dentry), f"{0:016x}"]
        return f"{file.fd:3d} " + " ".join([*cells, "?   ", "?"])
    cells = [address(file.file), address(file.dentry), address(file.inode)]
    return f"{file.fd:3d} " + " ".join([*cells, f"{file.type:<4}", file.path])


def files_text(header: str, files: TaskFiles) -> str:
    """One task's ``files`` block (without the blank lines crash puts around it)."""
    lines = [header]
    if files.root is not None:
        lines.append(root_cwd_line(files.root, files.cwd or ""))
    if files.files:
        lines.append(FILES_HEADER)
        lines += [open_file_row(file) for file in files.files]
    else:
        lines.append("No open files")
    return "".join(line + "\n" for line in lines)


#: crash's UVADDR_PRLEN on x86_64
UVADDR_PRLEN = 10

VM_HEADER = "  ".join(
    [
        mkstring("MM", VADDR_PRLEN, center=True),
        mkstring("PGD", VADDR_PRLEN, center=True),
        mkstring("RSS", 6, center=True),
        mkstring("TOTAL_VM", 8, center=True),
    ]
)
VMA_HEADER = (
    " ".join(
        [
            mkstring("VMA", VADDR_PRLEN, center=True),
            mkstring("START", UVADDR_PRLEN, center=True, rjust=True),
            mkstring("END", UVADDR_PRLEN, center=True, rjust=True),
        ]
    )
    + "  FLAGS FILE"
)


def vm_line(memory: TaskMemory, page_size: int) -> str:
    """``vm``'s MM line (memory.c PRINT_VM_DATA)."""
    return "  ".join(
        [
            mkstring(f"{memory.mm:x}", VADDR_PRLEN, center=True),
            mkstring(f"{memory.pgd:x}", VADDR_PRLEN, center=True),
            mkstring(f"{memory.rss_pages * page_size // 1024}k", 6, center=True),
            mkstring(f"{memory.total_vm_pages * page_size // 1024}k", 8, center=True),
        ]
    )


def vma_line(vma: Vma) -> str:
    """One ``vm`` area line (memory.c PRINT_VMA_DATA)."""
    return (
        f"{mkstring(f'{vma.address:x}', VADDR_PRLEN, center=True)} "
        f"{vma.start:>{UVADDR_PRLEN}x} {vma.end:>{UVADDR_PRLEN}x} {vma.flags:6x} {vma.file}"
    )


def vm_text(header: str, memory: TaskMemory, vmas: Sequence[Vma], page_size: int) -> str:
    """One task's ``vm`` block: its header, the MM line, and the areas (when it has an
    mm_struct)."""
    lines = [header, VM_HEADER, vm_line(memory, page_size)]
    if memory.mm:
        lines += [VMA_HEADER, *(vma_line(vma) for vma in vmas)]
    return "".join(line + "\n" for line in lines)


def ptov_lines(physical: int, virtual: int) -> list[str]:
    """``ptov``'s two lines: the header and the direct-map address."""
    return [
        f"{'VIRTUAL':<{VADDR_PRLEN}}  {'PHYSICAL':<{VADDR_PRLEN}}",
        f"{virtual:<{VADDR_PRLEN}x}  {physical:<{VADDR_PRLEN}x}",
    ]


# --- System V IPC -----------------------------------------------------------------------------

SHM_HEADER = " ".join(
    mkstring(text, width)
    for text, width in (
        ("SHMID_KERNEL", VADDR_PRLEN), ("KEY", 8), ("SHMID", 10), ("UID", 5),
        ("PERMS", 5), ("BYTES", 10), ("NATTCH", 6), ("STATUS", 6),
    )
)  # fmt: skip
SEM_HEADER = " ".join(
    mkstring(text, width)
    for text, width in (
        ("SEM_ARRAY", VADDR_PRLEN), ("KEY", 8), ("SEMID", 10), ("UID", 5), ("PERMS", 5),
        ("NSEMS", 10),
    )
)  # fmt: skip
MSG_HEADER = " ".join(
    mkstring(text, width)
    for text, width in (
        ("MSG_QUEUE", VADDR_PRLEN), ("KEY", 8), ("MSQID", 10), ("UID", 5), ("PERMS", 5),
        ("USED-BYTES", 12), ("MESSAGES", 12),
    )
)  # fmt: skip


def ipcs_text(shm: Sequence[IpcObject], sem: Sequence[IpcObject], msg: Sequence[IpcObject]) -> str:
    """``ipcs`` (ipcs.c): each kind's header, its objects or ``(none allocated)``, and a
    blank line."""

    def common(o: IpcObject) -> str:
        return (
            f"{o.address:<{VADDR_PRLEN}x} {o.key:08x} {o.id:<10d} {o.uid:<5d} {o.mode & 0o777:<5o}"
        )

    shm_rows = [
        f"{common(o)} {o.size:<10d} {o.count:<6d} "
        f"{'dest' if o.mode & 0o1000 else ''} {'locked' if o.mode & 0o2000 else ''}"
        for o in shm
    ]
    sem_rows = [f"{common(o)} {o.size:<10d}" for o in sem]
    msg_rows = [f"{common(o)} {o.size:<12d} {o.count:<12d}" for o in msg]
    lines = []
    for header, rows in ((SHM_HEADER, shm_rows), (SEM_HEADER, sem_rows), (MSG_HEADER, msg_rows)):
        lines += [header, *(rows or ["(none allocated)"]), ""]
    return "".join(f"{line}\n" for line in lines)


# --- timers ----------------------------------------------------------------------------------


def timers_text(jiffies: int, bases: Sequence[TimerBase], symbols: dict[int, str]) -> str:
    """``timer`` (kernel.c dump_timer_data_timer_bases()): jiffies, then each base's
    timers sorted by expiry, the TTE column as wide as the farthest one."""
    width = max(len(str(jiffies)), len("JIFFIES"))
    lines = [mkstring("JIFFIES", width), f"{jiffies:>{width}}", ""]
    previous_cpu = None
    for base in bases:
        if previous_cpu is not None and base.cpu != previous_cpu:
            lines.append("")
        previous_cpu = base.cpu
        lines.append(f"TIMER_BASES[{base.cpu}][{base.name}]: {base.address:x}")
        timers = sorted(base.timers, key=lambda t: t.expires)
        ttes = [_signed(t.expires - jiffies) for t in timers]
        tte_width = max(len(str(max((abs(t) for t in ttes), default=0))) + 1, len("TTE"))
        lines.append(
            f"  {mkstring('EXPIRES', width)}     {mkstring('TTE', tte_width)}"
            "     TIMER_LIST     FUNCTION"
        )
        for timer, tte in zip(timers, ttes, strict=True):
            lines.append(
                f"  {timer.expires:>{width}}  {tte:>{tte_width}}  {timer.address:>16x}"
                f"  {timer.function:>16x}  <{symbols.get(timer.function, '')}>"
            )
        if not timers:
            lines.append("  (none)")
    return "".join(f"{line}\n" for line in lines)


def _signed(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


# --- signals ------------------------------------------------------------------------------------

SIGNAL_HEADER = " SIG " + " ".join(
    [
        mkstring("SIGACTION", VADDR_PRLEN, center=True),
        mkstring("HANDLER", UVADDR_PRLEN, rjust=True),
        mkstring("MASK", 16, center=True),
        mkstring("FLAGS", VADDR_PRLEN),
    ]
)
#: sa_flags names in crash's order (x86_64 values)
SA_FLAG_NAMES = (
    (0x00000001, "SA_NOCLDSTOP"),
    (0x04000000, "SA_RESTORER"),
    (0x00000002, "SA_NOCLDWAIT"),
    (0x00000004, "SA_SIGINFO"),
    (0x08000000, "SA_ONSTACK"),
    (0x10000000, "SA_RESTART"),
    (0x40000000, "SA_NODEFER"),
    (0x80000000, "SA_RESETHAND"),
)
_HANDLER_NAMES = {-1: "SIG_ERR", 0: "SIG_DFL", 1: "SIG_IGN"}


def signal_action_line(action: SignalAction) -> str:
    """One handler line (task.c dump_signal_data())."""
    signed = action.handler - (1 << 64) if action.handler >= 1 << 63 else action.handler
    handler = _HANDLER_NAMES.get(signed, f"{action.handler:x}")
    flags = [name for bit, name in SA_FLAG_NAMES if action.flags & bit]
    names = f"({'|'.join(flags)})" if flags else ""
    return (
        f"{' ' if action.signal < 10 else ''}[{action.signal}] "
        f"{action.address:<{UVADDR_PRLEN}x} {handler:>{UVADDR_PRLEN}} "
        f"{action.mask:016x} {action.flags:x} {names}"
    )


def _pending_lines(pending: PendingSignals) -> list[str]:
    lines = [f"    SIGNAL: {pending.signals:016x}"]
    if not pending.queue:
        return [*lines, "  SIGQUEUE: (empty)"]
    lines.append("  SIGQUEUE:  SIG  " + mkstring("SIGINFO", VADDR_PRLEN, center=True))
    return lines + [f"             {signal:3d}  {info:x}" for signal, info in pending.queue]


def signals_text(header: str, signals: TaskSignals) -> str:
    """A task's ``sig`` block, with the blank line crash ends it with."""
    lines = [
        header,
        f"SIGNAL_STRUCT: {signals.signal_struct:x}  NR_THREADS: {signals.nr_threads}",
        SIGNAL_HEADER,
        *(signal_action_line(action) for action in signals.actions),
        f"SIGPENDING: {'yes' if signals.sigpending else 'no'}",
        f"   BLOCKED: {signals.blocked:016x}",
        "PRIVATE_PENDING",
        *_pending_lines(signals.private),
        "SHARED_PENDING",
        *_pending_lines(signals.shared),
    ]
    return "".join(f"{line}\n" for line in lines) + "\n"


# --- networking ------------------------------------------------------------------------------

NET_HEADER = mkstring("NET_DEVICE", VADDR_PRLEN, center=True) + "  NAME       IP ADDRESS(ES)"


def net_device_line(device: NetDevice) -> str:
    """One ``net`` line (net.c show_net_devices_v3())."""
    address = mkstring(f"{device.address:x}", VADDR_PRLEN, center=True, rjust=True)
    return f"{address}  {device.name:<10} {', '.join(device.addresses)}"


# --- interrupts ---------------------------------------------------------------------------------

IRQ_AFFINITY_HEADER = "IRQ NAME                 AFFINITY"
SOFTIRQ_HEADER = "SOFTIRQ_VEC " + mkstring("ACTION", VADDR_PRLEN, center=True, rjust=True)


def cpu_list(cpus: Sequence[int]) -> str:
    """``0-1,3``: runs of consecutive CPUs (kernel.c display_cpu_affinity())."""
    runs: list[list[int]] = []
    for cpu in cpus:
        if runs and runs[-1][1] == cpu - 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def irq_affinity_line(irq: IrqAffinity) -> str:
    """One ``irq -a`` line."""
    return f"{irq.irq:3d} {','.join(irq.names):<20} {cpu_list(irq.cpus)}"


def irq_counts_header(cpus: Sequence[int]) -> str:
    """``irq -s``'s header: a column per CPU."""
    return "     " + "".join(f"{'CPU' + str(cpu):>10} " for cpu in cpus)


def irq_counts_line(irq: IrqCounts) -> str:
    """One ``irq -s`` line (kernel.c generic_show_interrupts())."""
    line = f"{irq.irq:3d}: " + "".join(f"{count:10d} " for count in irq.counts)
    if irq.chip is not None:
        line += f"{irq.chip:>8}"
        if irq.flow is not None:
            line += f"-{irq.flow:<8}"
    return f"{line} {','.join(irq.names)}"


def softirq_line(action: SoftirqAction) -> str:
    """One ``irq -b`` line."""
    address = mkstring(f"{action.address:x}", VADDR_PRLEN, center=True, rjust=True)
    spaces = " " * (4 if action.vector < 10 else 3)
    line = f"    [{action.vector}]{spaces} {address}  <{action.function or ''}>"
    return line + (f"  [{action.module}]" if action.module else "")


# --- types --------------------------------------------------------------------------------------


def type_definition(type_: drgn.Type) -> str:
    """``whatis TYPE`` as crash prints it (gdb's ``ptype``): a struct or union with
    4-space indents and its size; an enum's enumerators without commas and no size; a
    typedef resolved to its final type, a structure's body included."""
    import drgn

    kind = type_.kind
    if kind == drgn.TypeKind.ENUM:
        lines = [f"  {e.name} = {e.value}" for e in type_.enumerators or ()]
        return "\n".join([f"{type_.type_name()} {{", *lines, "};"]) + "\n"
    if kind == drgn.TypeKind.TYPEDEF:
        target = type_.type
        while target.kind == drgn.TypeKind.TYPEDEF:
            target = target.type
        if target.kind in (drgn.TypeKind.STRUCT, drgn.TypeKind.UNION) and target.tag:
            text = f"typedef {_gdb_body(str(target))} {type_.name};"
        else:
            resolved = type_.prog.typedef_type(type_.name, target)
            text = _gdb_body(str(resolved)) + ";"
    else:
        text = _gdb_body(str(type_))
    return f"{text}\nSIZE: {drgn.sizeof(type_)}\n"


#: a member's anonymous enum as drgn spells it, one enumerator a line
_NESTED_ENUM = re.compile(r"^(\t+)enum \{\n((?:\1\t\w+ = -?\d+,\n)+)\1\}", re.MULTILINE)


def _gdb_enum(match: re.Match[str]) -> str:
    """A member's anonymous enum on one line, as gdb prints it: ``enum {A, B = 5}``
    (a value only where it is not the previous one plus one)."""
    items, expected = [], 0
    for name, value in re.findall(r"(\w+) = (-?\d+),", match.group(2)):
        items.append(name if int(value) == expected else f"{name} = {value}")
        expected = int(value) + 1
    return f"{match.group(1)}enum {{{', '.join(items)}}}"


def _gdb_body(declaration: str) -> str:
    """drgn's declaration as gdb prints it: four-space indents, members' anonymous enums
    on one line, flexible arrays as ``[]``."""
    lines = _NESTED_ENUM.sub(_gdb_enum, declaration).split("\n")
    for i, line in enumerate(lines[:-1]):
        # only a structure's last member is a flexible array; a [0] before others
        # is a zero-length array, and gdb prints it so
        if line.endswith("[0];") and lines[i + 1].lstrip("\t").startswith("}"):
            lines[i] = line[: -len("[0];")] + "[];"
    return "\n".join(
        "    " * (len(line) - len(line.lstrip("\t"))) + line.lstrip("\t") for line in lines
    )


# --- modules -----------------------------------------------------------------------------


def module_table(modules: Sequence[ModuleInfo], base_label: str) -> str:
    """crash's ``mod`` table: the NAME and SIZE columns as wide as their longest values."""
    width = max([len("NAME"), *(len(m.name) for m in modules)])
    size_width = max([len("SIZE"), *(len(str(m.size)) for m in modules)])
    lines = [
        f"{'MODULE':^16}  {'NAME':<{width}}  {base_label:^16}  {'SIZE':>{size_width}}  OBJECT FILE"
    ]
    # crash loads no module objects: their symbols come from kallsyms
    lines += [
        f"{m.module:016x}  {m.name:<{width}}  {m.base:016x}"
        f"  {m.size:>{size_width}}  (not loaded)  [CONFIG_KALLSYMS]"
        for m in modules
    ]
    return "\n".join(lines) + "\n"


# --- the log -----------------------------------------------------------------------------


def log_line(
    record: LogRecord,
    *,
    timestamps: bool = True,
    level: bool = False,
    caller: bool = False,
    dictionary: bool = False,
) -> str:
    """``[    5.273271] text`` with crash's optional level and caller prefixes, and with
    ``dictionary`` the record's KEY=value lines (SUBSYSTEM=, DEVICE=) under its text."""
    prefix = ""
    if timestamps:
        seconds, nanos = divmod(record.timestamp_ns, 1_000_000_000)
        prefix = f"[{seconds:>5}.{nanos // 1000:06d}] "
    if caller:
        if record.caller_tid is not None:
            prefix += f"[{'T' + str(record.caller_tid):>6}] "
        elif record.caller_cpu is not None:
            prefix += f"[{'C' + str(record.caller_cpu):>6}] "
    if level:
        prefix += f"<{record.level}>"
    # A record's continuation lines are indented under its text, as crash does.
    text = prefix + record.text.replace("\n", "\n" + " " * len(prefix))
    if dictionary:
        text += "".join(f"\n{' ' * len(prefix)}{key}={value}" for key, value in record.dict.items())
    return text


# --- stacks --------------------------------------------------------------------------------

#: crash's register block: (label, register) triples per line; labels are right-aligned.
_REGISTER_ROWS = (
    (("RIP", "rip"), ("RSP", "rsp"), ("RFLAGS", "eflags")),
    (("RAX", "rax"), ("RBX", "rbx"), ("RCX", "rcx")),
    (("RDX", "rdx"), ("RSI", "rsi"), ("RDI", "rdi")),
    (("RBP", "rbp"), ("R8", "r8"), ("R9", "r9")),
    (("R10", "r10"), ("R11", "r11"), ("R12", "r12")),
    (("R13", "r13"), ("R14", "r14"), ("R15", "r15")),
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


def arm64_register_lines(
    registers: dict[str, int], pt_regs_tail: tuple[int, int] | None = None
) -> list[str]:
    """An arm64 exception frame's registers as crash prints them: PC, LR, SP, then x29
    down to x0 three a line, then ORIG_X0, SYSCALLNO and PSTATE when the pt_regs they
    came from is known (``pt_regs_tail`` = its orig_x0 and syscallno)."""
    lines = [
        f"     PC: {registers['pc']:016x}   LR: {registers['x30']:016x}   "
        f"SP: {registers['sp']:016x}"
    ]
    cells = [f"{f'X{n}':>3}: {registers[f'x{n}']:016x}" for n in range(29, -1, -1)]
    for i in range(0, len(cells), 3):
        lines.append("    " + "  ".join(cells[i : i + 3]))
    if pt_regs_tail is not None:
        orig_x0, syscallno = pt_regs_tail
        lines.append(
            f"    ORIG_X0: {orig_x0:016x}  SYSCALLNO: {syscallno:x}  "
            f"PSTATE: {registers['pstate']:08x}"
        )
    return lines


def exception_rip_line(symbol: str | None) -> str:
    """``[exception RIP: func+off]`` (``symbol`` with its decimal offset)."""
    return f"    [exception RIP: {symbol or 'unknown or invalid address'}]"


def frame_line(
    index: int, frame: Frame, with_offset: bool = False, hex_offsets: bool = False
) -> str:
    """`` #N [sp] function at pc [module]``; with ``with_offset`` ``function+off``, the
    offset in decimal or (``hex_offsets``, ``bt -sx``) in hex."""
    if with_offset and hex_offsets and frame.function is not None and frame.offset:
        name = f"{frame.function}+{frame.offset:#x}"
    elif with_offset:
        name = frame.symbol_text
    else:
        name = frame.function or f"{frame.pc:x}"
    module = f" [{frame.module}]" if frame.module else ""
    # arm64: crash shows where a frame record's return lands, not the unwinder's pc
    pc = frame.pc if frame.display_pc is None else frame.display_pc
    return f"{'' if index >= 10 else ' '}#{index} [{frame.sp:x}] {name} at {pc:x}{module}"
