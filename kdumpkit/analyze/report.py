"""The one-page triage report: why did this kernel die?  Gathering (``gather_report``,
from :mod:`kdumpkit.analyze.facts`) gives a typed :class:`Report`; rendering
(``render_text``, ``render_json``, ``render_html``) is separate."""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import drgn

from kdumpkit.analyze.context import dump_path, program_dump
from kdumpkit.analyze.crashformat import date_text, log_line, register_lines, uptime_text
from kdumpkit.analyze.facts.clock import uptime_seconds
from kdumpkit.analyze.facts.cpus import cpu_pids, for_each_cpu_in_dump
from kdumpkit.analyze.facts.log import dump_stack_task, log_records, panic_from_log
from kdumpkit.analyze.facts.modules import ModuleInfo, loaded_modules
from kdumpkit.analyze.facts.system import system_info
from kdumpkit.analyze.facts.taint import Taint, kernel_taint
from kdumpkit.analyze.facts.tasks import (
    for_each_task_with_idle,
    panic_task,
    task_comm,
    task_state_code,
)
from kdumpkit.analyze.guard import damage_notes
from kdumpkit.analyze.stack import Frame, panic_cpu, stack_trace, task_cpu
from kdumpkit.dump.errors import DumpError

if TYPE_CHECKING:
    from drgn import Object, Program

T = TypeVar("T")

#: log lines kept in the report
LOG_TAIL = 50
#: frames that make up the crash signature
SIGNATURE_FRAMES = 5

#: Functions of the panic, kexec, NMI and oops machinery: the same for every crash,
#: so they say nothing about its cause and are left out of the signature.
MACHINERY = frozenset(
    {
        "machine_kexec",
        "__crash_kexec",
        "crash_kexec",
        "panic",
        "vpanic",
        "nmi_panic",
        "crash_setup_regs",
        "native_machine_crash_shutdown",
        "crash_save_cpu",
        "oops_end",
        "die",
        "__die",
        "die_addr",
        "do_trap",
        "do_error_trap",
        "exc_invalid_op",
        "handle_bug",
        "asm_exc_invalid_op",
        "exc_page_fault",
        "asm_exc_page_fault",
        "page_fault_oops",
        "kernelmode_fixup_or_oops",
        "__bad_area_nosemaphore",
        "bad_area_nosemaphore",
        "do_user_addr_fault",
        "no_context",
        "crash_nmi_callback",
        "nmi_handle",
        "default_do_nmi",
        "exc_nmi",
        "asm_exc_nmi",
        "nmi_cpu_backtrace",
        "dump_stack",
        "dump_stack_lvl",
        "show_stack",
        "show_regs",
        "__warn",
        "report_bug",
        "watchdog_timer_fn",
        "watchdog_overflow_callback",
    }
)
_COMPILER_SUFFIX = re.compile(r"(\.(cold|isra|constprop|part|lto_priv|llvm)(\.\d+)?)+$")


# --- gathering -------------------------------------------------------------------------------


def normalise_function(name: str) -> str:
    """A function name without offset or compiler suffixes (``.cold``, ``.isra.0``)."""
    name = name.split("+", 1)[0]
    return _COMPILER_SUFFIX.sub("", name)


def crash_signature(functions: Sequence[str | None], panic: str | None) -> Signature | None:
    """sha256 of the top frames' functions (innermost first) once the panic machinery is
    dropped (or of the message, when no frame is left); None when there is neither (a
    damaged dump: the sha256 of nothing would group unrelated crashes)."""
    names = [normalise_function(f) for f in functions if f]
    # Frames are innermost first: whatever ran inside the outermost machinery frame
    # (panic notifiers, kexec, the NMI handler's callees) is part of the machinery too.
    last = max((i for i, name in enumerate(names) if name in MACHINERY), default=-1)
    meaningful = [
        n for n in names[last + 1 :] if n not in MACHINERY and not n.startswith(("entry_", "asm_"))
    ]
    top = meaningful[:SIGNATURE_FRAMES]
    if top:
        basis = "|".join(top)
    elif not panic:
        return None
    else:
        # No usable frames: fall back on the message without its numbers.
        basis = re.sub(r"(0x)?[0-9a-fA-F]{4,}|\d+", "N", panic or "")
    return Signature(hashlib.sha256(basis.encode()).hexdigest(), top, basis)


# --- the record ------------------------------------------------------------------------------


@dataclass
class Signature:
    """What identifies a crash across machines: the hash of its meaningful frames."""

    sha256: str
    #: the function names hashed, innermost first
    frames: list[str]
    #: the hashed text (the frames joined by ``|``, or the panic message)
    basis: str

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "frames": list(self.frames), "basis": self.basis}


@dataclass
class ReportTask:
    """A task the report shows: the crashing one, one per other CPU, a blocked one, or
    (live) one running.  Without kernel types only the CPU and PID may be known."""

    pid: int | None
    comm: str | None
    task: int | None
    cpu: int | None
    #: innermost first; None when not unwound (a live kernel's running tasks)
    backtrace: list[Frame] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"pid": self.pid, "comm": self.comm, "task": self.task}
        data["cpu"] = self.cpu
        if self.backtrace is not None:
            data["backtrace"] = [frame.to_json(i) for i, frame in enumerate(self.backtrace)]
        return data


@dataclass
class Report:
    """Everything the triage report shows.  Of a running kernel (/proc/kcore) there is
    no crash: no panic, crashing task or signature; it then says what each CPU runs."""

    release: str | None = None
    version: str | None = None
    machine: str | None = None
    nodename: str | None = None
    cpus: int | None = None
    uptime_seconds: int | None = None
    #: wall-clock seconds at the crash (or now, live)
    crash_time: int | None = None
    panic: str | None = None
    dumpfile: str | None = None
    live: bool = False
    taint: Taint | None = None
    modules: list[ModuleInfo] = field(default_factory=list)
    log_tail: list[str] = field(default_factory=list)
    crashing_task: ReportTask | None = None
    other_cpus: list[ReportTask] = field(default_factory=list)
    #: live only: the task on each CPU (no backtraces: their stacks are moving)
    running: list[ReportTask] = field(default_factory=list)
    #: the first :data:`BLOCKED_SHOWN` tasks in uninterruptible sleep
    blocked_tasks: list[ReportTask] = field(default_factory=list)
    blocked_count: int = 0
    signature: Signature | None = None
    #: what could not be read, one line each
    errors: list[str] = field(default_factory=list)

    @property
    def uptime(self) -> str | None:
        """``00:00:05``, as crash's UPTIME."""
        return uptime_text(self.uptime_seconds) if self.uptime_seconds is not None else None

    @property
    def crash_date(self) -> str | None:
        """``Thu Nov 26 08:41:23 UTC 2026``, as crash's DATE."""
        return date_text(self.crash_time) if self.crash_time is not None else None

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (addresses as integers)."""
        return {
            "release": self.release,
            "version": self.version,
            "machine": self.machine,
            "nodename": self.nodename,
            "cpus": self.cpus,
            "uptime_seconds": self.uptime_seconds,
            "uptime": self.uptime,
            "crash_time": self.crash_time,
            "crash_date": self.crash_date,
            "panic": self.panic,
            "dumpfile": self.dumpfile,
            "live": self.live,
            "taint": self.taint.to_json() if self.taint is not None else None,
            "modules": [
                {"name": m.name, "base": m.base, "size": m.size, "taints": m.taints}
                for m in self.modules
            ],
            "log_tail": list(self.log_tail),
            "crashing_task": self.crashing_task.to_json() if self.crashing_task else None,
            "other_cpus": [t.to_json() for t in self.other_cpus],
            "running": [t.to_json() for t in self.running],
            "blocked_tasks": [t.to_json() for t in self.blocked_tasks],
            "blocked_count": self.blocked_count,
            "signature": self.signature.to_json() if self.signature else None,
            "errors": list(self.errors),
        }


# --- gathering -------------------------------------------------------------------------------

#: Blocked tasks shown with their backtraces; the rest are counted.
BLOCKED_SHOWN = 10
#: what a gathering step may fail with when the dump lacks something
_MISSING = (
    drgn.FaultError,
    LookupError,
    ValueError,
    AttributeError,
    TypeError,
    NotImplementedError,
    DumpError,
)


def _safely(what: str, errors: list[str], func: Callable[..., T], *args: Any) -> T | None:
    """Run one gathering step; a failure is recorded and the report goes on."""
    try:
        return func(*args)
    except _MISSING as exc:
        errors.append(f"{what}: {exc}")
        return None


def is_live(prog: Program) -> bool:
    """Whether ``prog`` is the running kernel (/proc/kcore), not a dump."""
    return bool(prog.flags & drgn.ProgramFlags.IS_LIVE)


def _task(prog: Program, task: Object, errors: list[str], backtrace: bool = True) -> ReportTask:
    summary = ReportTask(
        pid=task.pid.value_(), comm=task_comm(task), task=task.value_(), cpu=task_cpu(task)
    )
    if backtrace:
        summary.backtrace = _safely("backtrace", errors, stack_trace, prog, task) or []
    return summary


def _fill_system(prog: Program, report: Report, log_lines: list[str], errors: list[str]) -> None:
    """The names, CPUs, clock and panic: from the kernel's types, else from the dump's
    headers, VMCOREINFO and log."""
    info = _safely("system", errors, system_info, prog)
    if info is not None:
        report.release, report.version = info.release, info.version
        report.machine, report.nodename = info.machine, info.nodename
        report.cpus, report.uptime_seconds = info.cpus, info.uptime_seconds
        report.crash_time, report.panic, report.dumpfile = info.timestamp, info.panic, info.dumpfile
        return
    dump = program_dump(prog)
    uts = dict(dump.header.utsname) if dump is not None else {}
    vmcoreinfo = dump.vmcoreinfo if dump is not None else None
    report.release = uts.get("release") or (vmcoreinfo.osrelease if vmcoreinfo else None)
    report.version = uts.get("version")
    report.machine = uts.get("machine") or (dump.header.machine if dump is not None else None)
    report.nodename = uts.get("nodename")
    report.cpus = len(dump.prstatus) if dump is not None else None
    report.crash_time = vmcoreinfo.crashtime if vmcoreinfo else None
    report.panic = panic_from_log(log_lines)
    report.dumpfile = dump_path(prog)
    try:
        report.uptime_seconds = uptime_seconds(prog)
    except (LookupError, ValueError, drgn.FaultError):
        pass


def _crashing_without_types(
    prog: Program, log_lines: list[str], errors: list[str]
) -> ReportTask | None:
    """The panic CPU's task from NT_PRSTATUS and the log's dump_stack() header."""
    cpu = _safely("panic cpu", errors, panic_cpu, prog)
    if cpu is None:
        return None
    summary = ReportTask(pid=cpu_pids(prog).get(cpu), comm=None, task=None, cpu=cpu)
    logged = dump_stack_task(log_lines, cpu)
    if logged is not None:
        summary.pid, summary.comm = logged
    summary.backtrace = _safely("backtrace", errors, stack_trace, prog, cpu) or []
    return summary


def blocked_tasks(prog: Program, errors: list[str]) -> tuple[list[ReportTask], int]:
    """Tasks in uninterruptible sleep (crash's ``UN``; not the idle ``ID`` kthreads): what
    a hung machine waits on. The first :data:`BLOCKED_SHOWN` with backtraces, and the count."""
    tasks: list[Object] = _safely("tasks", errors, list, for_each_task_with_idle(prog)) or []
    blocked = [
        task for task in tasks if _safely("task state", errors, task_state_code, task) == "UN"
    ]
    shown = [
        summary
        for task in blocked[:BLOCKED_SHOWN]
        if (summary := _safely("blocked task", errors, _task, prog, task, errors)) is not None
    ]
    return shown, len(blocked)


def _other_cpus(
    prog: Program, crashing: ReportTask | None, errors: list[str], backtraces: bool = True
) -> list[ReportTask]:
    """The task on every CPU but the crashing task's, and (``backtraces``) its backtrace
    from the saved registers."""
    from drgn.helpers.linux.sched import cpu_curr

    panic_cpu_number = crashing.cpu if crashing else None
    try:
        cpus = for_each_cpu_in_dump(prog)
        typed = True
    except (LookupError, drgn.FaultError):
        cpus = sorted(cpu_pids(prog))
        typed = False
    others = []
    for cpu in cpus:
        if cpu == panic_cpu_number:
            continue
        if typed:
            current = _safely(f"cpu {cpu}", errors, cpu_curr, prog, cpu)
            if current is None:
                continue
            summary = _safely(f"cpu {cpu}", errors, _task, prog, current, errors, False)
            if summary is None:
                continue
        else:
            summary = ReportTask(pid=cpu_pids(prog).get(cpu), comm=None, task=None, cpu=cpu)
        summary.cpu = cpu
        if backtraces:
            what = f"backtrace of cpu {cpu}"
            summary.backtrace = _safely(what, errors, stack_trace, prog, cpu) or []
        others.append(summary)
    return others


def gather_report(prog: Program) -> Report:
    """Everything the triage report shows."""
    errors: list[str] = []
    records = _safely("log", errors, log_records, prog) or []
    all_lines = [line for r in records for line in log_line(r).split("\n")]
    report = Report(live=is_live(prog))
    _fill_system(prog, report, [log_line(r, timestamps=False) for r in records], errors)
    report.blocked_tasks, report.blocked_count = blocked_tasks(prog, errors)
    report.taint = _safely("taint", errors, kernel_taint, prog)
    report.log_tail = all_lines[-LOG_TAIL:]
    report.modules = _safely("modules", errors, loaded_modules, prog) or []
    report.errors = errors
    if report.live:
        report.running = _other_cpus(prog, None, errors, backtraces=False)
        return report
    task = _safely("panic task", errors, panic_task, prog)
    if task is not None:
        report.crashing_task = _safely("panic task", errors, _task, prog, task, errors)
    else:
        report.crashing_task = _crashing_without_types(prog, all_lines, errors)
    report.other_cpus = _other_cpus(prog, report.crashing_task, errors)
    frames = report.crashing_task.backtrace if report.crashing_task else None
    report.signature = crash_signature([f.function for f in frames or []], report.panic)
    report.errors += [str(damage) for damage in damage_notes(prog)]
    return report


# --- rendering ---------------------------------------------------------------------------


def _frame_text(index: int, frame: Frame) -> str:
    """crash's frame line: `` #1 [sp] function at pc [module]``."""
    text = f"{'#' + str(index):>3} [{frame.sp:x}] {frame.function or '?'} at {frame.pc:x}"
    if frame.module:
        text += f" [{frame.module}]"
    return text


def _task_text(title: str, task: ReportTask) -> list[str]:
    comm = f' "{task.comm}"' if task.comm else ""
    where = f" (task {task.task:x})" if task.task is not None else ""
    lines = [f"{title}: PID {task.pid}{comm} on CPU {task.cpu}{where}"]
    if not task.backtrace:
        return [*lines, "  (no backtrace)"]
    for index, frame in enumerate(task.backtrace):
        lines.append(_frame_text(index, frame))
        if frame.registers:
            lines += register_lines(frame.registers)
    return lines


def render_text(report: Report) -> str:
    """The report for a terminal."""
    taint, signature, live = report.taint, report.signature, report.live
    taint_text = f"Tainted: {taint.letters}" if taint and taint.tainted else "Not tainted"
    lines = [
        "LIVE KERNEL REPORT (the running kernel, /proc/kcore)" if live else "KERNEL CRASH REPORT",
        f"     release: {report.release}",
        f"     version: {report.version}",
        f"     machine: {report.machine}  ({report.cpus} CPUs)",
        f"{'time' if live else 'crash time':>12}: {report.crash_date}",
        f"      uptime: {report.uptime}",
    ]
    if not live:
        lines.append(f"       panic: {report.panic or '(no panic message in the log)'}")
    lines.append(f"     tainted: {taint_text}")
    if signature:
        lines += [
            f"   signature: {signature.sha256}",
            f"              ({' < '.join(signature.frames) or signature.basis})",
        ]
    lines.append("")
    if live:
        for t in report.running:
            where = f" (task {t.task:x})" if t.task is not None else ""
            lines.append(f'Running on CPU {t.cpu}: PID {t.pid} "{t.comm}"{where}')
    elif report.crashing_task:
        lines += _task_text("Crashing task", report.crashing_task)
    else:
        lines.append("Crashing task: not found")
    for other in report.other_cpus:
        lines += ["", *_task_text(f"CPU {other.cpu}", other)]
    count, shown = report.blocked_count, report.blocked_tasks
    lines += ["", f"Blocked tasks (uninterruptible sleep): {count or 'none'}"]
    if count > len(shown):
        lines.append(f"  (the first {len(shown)} shown)")
    for task in shown:
        lines += _task_text("Blocked", task)
    lines += ["", f"Modules ({len(report.modules)}):"]
    lines += [
        f"  {m.name:<24} {m.base:016x} {m.size:>8}" + (f"  [{m.taints}]" if m.taints else "")
        for m in report.modules
    ]
    lines += ["", f"Last {len(report.log_tail)} log lines:"]
    lines += report.log_tail
    if report.errors:
        lines += ["", "Could not read:"] + [f"  {e}" for e in report.errors]
    return "\n".join(lines) + "\n"


def render_json(report: Report) -> str:
    """The report as JSON (addresses as integers)."""
    return json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n"


def render_html(report: Report) -> str:
    """A standalone HTML page."""
    esc = html.escape
    text_sections = render_text(report).split("\n\n")
    head = text_sections[0].splitlines()
    rows = "".join(
        f"<tr><th>{esc(line.split(':', 1)[0].strip())}</th>"
        f"<td>{esc(line.split(':', 1)[1].strip())}</td></tr>"
        for line in head[1:]
        if ":" in line
    )
    body = "".join(f"<pre>{esc(section)}</pre>" for section in text_sections[1:])
    if report.live:
        title = esc(f"Live kernel: {report.release or ''}")
    else:
        title = esc(f"Kernel crash: {report.panic or report.release or ''}")
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{title}</title>"
        "<style>body{font-family:sans-serif} th{text-align:right;padding-right:1em}"
        " pre{background:#f4f4f4;padding:.5em}</style></head><body>"
        f"<h1>{title}</h1><table>{rows}</table>{body}</body></html>\n"
    )
