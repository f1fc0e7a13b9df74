"""The one-page triage report: why did this kernel die?  Gathering (``gather_report``)
is separate from rendering (``render_text``, ``render_json``, ``render_html``)."""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import drgn

from kdumpkit.dump.errors import DumpError

if TYPE_CHECKING:
    from drgn import Object, Program

#: log lines kept in the report
LOG_TAIL = 50
#: frames that make up the crash signature
SIGNATURE_FRAMES = 5

#: The kernel's taint letters by bit (kernel/panic.c taint_flags[]): (set, unset).
#: Used when the kernel's own table cannot be read.
TAINT_FLAGS: tuple[tuple[str, str], ...] = (
    ("P", "G"),
    ("F", " "),
    ("S", " "),
    ("R", " "),
    ("M", " "),
    ("B", " "),
    ("U", " "),
    ("D", " "),
    ("A", " "),
    ("W", " "),
    ("C", " "),
    ("I", " "),
    ("O", " "),
    ("E", " "),
    ("L", " "),
    ("K", " "),
    ("X", " "),
    ("T", " "),
    ("N", " "),
    ("J", " "),
)

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


def decode_taint(mask: int, flags: Sequence[tuple[str, str]] = TAINT_FLAGS) -> dict[str, Any]:
    """A taint mask as the kernel prints it (``G        W  O``) and its set letters."""
    letters = "".join(
        set_ if mask & (1 << bit) else unset for bit, (set_, unset) in enumerate(flags)
    )
    set_letters = [set_ for bit, (set_, _) in enumerate(flags) if mask & (1 << bit)]
    return {
        "mask": mask,
        "letters": letters.rstrip() if mask else "",
        "flags": set_letters,
        "tainted": bool(mask),
    }


def taint_info(prog: Program) -> dict[str, Any]:
    """tainted_mask decoded with the kernel's own taint_flags[] (else the built-in table)."""
    from kdumpkit.analyze.commands.common import read_global_int

    try:
        mask = prog["tainted_mask"].value_()
    except LookupError:
        mask = read_global_int(prog, "tainted_mask", 8)
    flags: Sequence[tuple[str, str]] = TAINT_FLAGS
    try:
        flags = [
            (chr(entry.c_true.value_()), chr(entry.c_false.value_()))
            for entry in prog["taint_flags"]
        ]
    except (LookupError, TypeError, drgn.FaultError):
        pass
    return decode_taint(mask, flags)


def normalise_function(name: str) -> str:
    """A function name without offset or compiler suffixes (``.cold``, ``.isra.0``)."""
    name = name.split("+", 1)[0]
    return _COMPILER_SUFFIX.sub("", name)


def crash_signature(frames: list[dict[str, Any]], panic: str | None) -> dict[str, Any]:
    """sha256 of the top frames once the panic machinery is dropped (or of the message)."""
    names = [normalise_function(f["function"]) for f in frames if f.get("function")]
    # Frames are innermost first: whatever ran inside the outermost machinery frame
    # (panic notifiers, kexec, the NMI handler's callees) is part of the machinery too.
    last = max((i for i, name in enumerate(names) if name in MACHINERY), default=-1)
    meaningful = [
        n for n in names[last + 1 :] if n not in MACHINERY and not n.startswith(("entry_", "asm_"))
    ]
    top = meaningful[:SIGNATURE_FRAMES]
    if top:
        basis = "|".join(top)
    else:
        # No usable frames: fall back on the message without its numbers.
        basis = re.sub(r"(0x)?[0-9a-fA-F]{4,}|\d+", "N", panic or "")
    return {"sha256": hashlib.sha256(basis.encode()).hexdigest(), "frames": top, "basis": basis}


def _frame_row(prog: Program, frame: Any) -> dict[str, Any]:
    """One frame as data, from our unwinder's frames or drgn's."""
    from kdumpkit.analyze.commands.common import symbol_module

    if isinstance(frame, dict):
        row = dict(frame)
    else:
        row = {}
        for key in (
            "function",
            "name",
            "pc",
            "sp",
            "module",
            "offset",
            "is_exception_frame",
            "registers",
            "stack",
        ):
            value = getattr(frame, key, None)
            if value is not None and not callable(value):
                row[key] = value
    if "function" not in row:
        row["function"] = row.pop("name", None)
    if row.get("function") is None and row.get("pc") is not None:
        try:
            row["function"] = prog.symbol(row["pc"]).name
        except LookupError:
            row["function"] = None
    if "module" not in row and row.get("pc") is not None:
        row["module"] = symbol_module(prog, row["pc"])
    return {
        k: v
        for k, v in row.items()
        if isinstance(v, (int, str, bool, type(None)))
        or (isinstance(v, dict) and all(isinstance(x, int) for x in v.values()))
    }


def backtrace(prog: Program, task: Object, cpu: int | None = None) -> list[dict[str, Any]]:
    """The task's frames (from ``cpu``'s saved registers if given): the ORC unwinder's
    when it is there, else drgn's."""
    try:
        from kdumpkit.analyze.stack import stack_trace
    except ImportError:
        stack_trace = None
    if stack_trace is not None:
        trace = stack_trace(prog, task if cpu is None else cpu)
        frames = getattr(trace, "frames", trace)
        return [_frame_row(prog, frame) for frame in frames]
    rows = []
    for frame in prog.stack_trace(task):
        try:
            pc = frame.pc
        except LookupError:
            continue
        try:
            sp = frame.sp
        except LookupError:
            sp = None
        rows.append(_frame_row(prog, {"pc": pc, "sp": sp, "function": frame.name}))
    return rows


def _task_summary(prog: Program, task: Object) -> dict[str, Any]:
    from drgn.helpers.linux.sched import task_cpu

    from kdumpkit.analyze.commands.common import task_comm

    return {
        "pid": task.pid.value_(),
        "comm": task_comm(task),
        "task": task.value_(),
        "cpu": task_cpu(task),
    }


def _safely(what: str, errors: list[str], func: Any, *args: Any, default: Any = None) -> Any:
    """Run one gathering step; a failure is recorded and the report goes on."""
    try:
        return func(*args)
    except (
        drgn.FaultError,
        LookupError,
        ValueError,
        AttributeError,
        TypeError,
        NotImplementedError,
        DumpError,
    ) as exc:
        errors.append(f"{what}: {exc}")
        return default


#: the kernel's dump_stack() header: "CPU: 0 PID: 134 Comm: testbed_crasher ..."
_DUMP_STACK_HEADER = re.compile(r"CPU: (\d+) (?:UID: \d+ )?PID: (\d+) Comm: (\S+)")
#: panic messages, most telling first (as drgn.helpers.linux.panic ranks them)
_PANIC_LINE = re.compile(
    r"(Kernel panic - .*)|(BUG: (?:kernel NULL pointer dereference|unable to handle).*"
    r"|Unable to handle kernel.*)|([Kk]ernel BUG at.*)|(Oops: .*)"
)


def panic_from_log(lines: list[str]) -> str | None:
    """The most telling panic line of the log (without its timestamp)."""
    best: tuple[int, str] | None = None
    for line in lines:
        match = _PANIC_LINE.search(line)
        if match and match.lastindex is not None and (best is None or match.lastindex < best[0]):
            best = (match.lastindex, match.group())
    return best[1] if best else None


def facts_without_types(prog: Program, log_lines: list[str]) -> dict[str, Any]:
    """What the dump's headers, VMCOREINFO and log say when kernel types are missing."""
    from kdumpkit.analyze.commands import sys as sys_command

    dump = prog.cache.get("kdumpkit.dump")
    uts = dict(dump.header.utsname) if dump is not None else {}
    vmcoreinfo = dump.vmcoreinfo if dump is not None else None
    facts: dict[str, Any] = {
        "release": uts.get("release") or (vmcoreinfo.osrelease if vmcoreinfo else None),
        "version": uts.get("version"),
        "machine": uts.get("machine") or (dump.header.machine if dump is not None else None),
        "nodename": uts.get("nodename"),
        "cpus": len(dump.prstatus) if dump is not None else None,
        "timestamp": vmcoreinfo.crashtime if vmcoreinfo else None,
        "panic": panic_from_log(log_lines),
        "dumpfile": getattr(dump, "name", None),
    }
    if facts["timestamp"] is not None:
        facts["date"] = sys_command.date_text(facts["timestamp"])
    try:
        facts["uptime_seconds"] = sys_command.uptime_seconds(prog)
    except (LookupError, ValueError, drgn.FaultError):
        pass
    return facts


def _cpu_pids(prog: Program) -> dict[int, int]:
    """CPU -> PID of the task it ran, from the dump's NT_PRSTATUS notes."""
    dump = prog.cache.get("kdumpkit.dump")
    return {status.cpu: status.pid for status in dump.prstatus} if dump is not None else {}


def _crashing_without_types(
    prog: Program, log_lines: list[str], errors: list[str]
) -> dict[str, Any] | None:
    """The panic CPU's task from NT_PRSTATUS and the log's dump_stack() header."""
    try:
        from kdumpkit.analyze.stack import panic_cpu
    except ImportError:
        return None
    cpu = _safely("panic cpu", errors, panic_cpu, prog)
    if cpu is None:
        return None
    summary: dict[str, Any] = {
        "cpu": cpu,
        "pid": _cpu_pids(prog).get(cpu),
        "comm": None,
        "task": None,
    }
    for line in reversed(log_lines):
        match = _DUMP_STACK_HEADER.search(line)
        if match and int(match.group(1)) == cpu:
            summary["pid"], summary["comm"] = int(match.group(2)), match.group(3)
            break
    summary["backtrace"] = _safely("backtrace", errors, backtrace, prog, None, cpu, default=[])
    return summary


#: Blocked tasks shown with their backtraces; the rest are counted.
BLOCKED_SHOWN = 10


def is_live(prog: Program) -> bool:
    """Whether ``prog`` is the running kernel (/proc/kcore), not a dump."""
    return bool(prog.flags & drgn.ProgramFlags.IS_LIVE)


def blocked_tasks(prog: Program, errors: list[str]) -> tuple[list[dict[str, Any]], int]:
    """Tasks in uninterruptible sleep (crash's ``UN``; not the idle ``ID`` kthreads): what
    a hung machine waits on. The first :data:`BLOCKED_SHOWN` with backtraces, and the count."""
    from kdumpkit.analyze.commands.common import for_each_task_with_idle
    from kdumpkit.analyze.commands.ps import task_state_code

    blocked = [
        task
        for task in _safely("tasks", errors, list, for_each_task_with_idle(prog), default=[])
        if _safely("task state", errors, task_state_code, task) == "UN"
    ]
    shown = []
    for task in blocked[:BLOCKED_SHOWN]:
        summary = _safely("blocked task", errors, _task_summary, prog, task)
        if summary is not None:
            summary["backtrace"] = _safely("backtrace", errors, backtrace, prog, task, default=[])
            shown.append(summary)
    return shown, len(blocked)


def gather_report(prog: Program) -> dict[str, Any]:
    """Everything the triage report shows, as JSON-ready data. Of a running kernel
    (/proc/kcore) there is no crash: no panic, crashing task or signature; the report
    then says what each CPU runs and which tasks are blocked."""
    from kdumpkit.analyze.commands import sys as sys_command
    from kdumpkit.analyze.commands.common import panic_task
    from kdumpkit.analyze.commands.log import format_record, log_records
    from kdumpkit.analyze.commands.mod import module_table

    errors: list[str] = []
    records = _safely("log", errors, log_records, prog, default=[])
    all_lines = [line for r in records for line in format_record(r).split("\n")]
    info = _safely("system", errors, sys_command.system_info, prog)
    if info is None:
        info = facts_without_types(prog, [format_record(r, timestamps=False) for r in records])
    report: dict[str, Any] = {
        "release": info.get("release"),
        "version": info.get("version"),
        "machine": info.get("machine"),
        "nodename": info.get("nodename"),
        "cpus": info.get("cpus"),
        "uptime_seconds": info.get("uptime_seconds"),
        "uptime": (
            sys_command.uptime_text(info["uptime_seconds"])
            if info.get("uptime_seconds") is not None
            else None
        ),
        "crash_time": info.get("timestamp"),
        "crash_date": info.get("date"),
        "panic": info.get("panic"),
        "dumpfile": info.get("dumpfile"),
        "live": is_live(prog),
    }
    report["blocked_tasks"], report["blocked_count"] = blocked_tasks(prog, errors)
    report["taint"] = _safely("taint", errors, taint_info, prog)
    report["log_tail"] = all_lines[-LOG_TAIL:]
    report["modules"] = [
        {"name": m["name"], "base": m["base"], "size": m["size"], "taints": m["taints"]}
        for m in _safely("modules", errors, module_table, prog, default=[])
    ]
    if report["live"]:
        report["crashing_task"] = None
        report["other_cpus"] = []
        # A running task's stack is moving under us: no backtraces.
        report["running"] = _other_cpus(prog, None, errors, backtraces=False)
        report["signature"] = None
        report["errors"] = errors
        return report
    task = _safely("panic task", errors, panic_task, prog)
    crashing: dict[str, Any] | None = None
    if task is not None:
        crashing = _safely("panic task", errors, _task_summary, prog, task)
        if crashing is not None:
            crashing["backtrace"] = _safely("backtrace", errors, backtrace, prog, task, default=[])
    else:
        crashing = _crashing_without_types(prog, all_lines, errors)
    report["crashing_task"] = crashing
    report["other_cpus"] = _other_cpus(prog, crashing, errors)
    frames = crashing["backtrace"] if crashing else []
    report["signature"] = crash_signature(frames or [], report["panic"])
    report["errors"] = errors
    return report


def _other_cpus(
    prog: Program, crashing: dict[str, Any] | None, errors: list[str], backtraces: bool = True
) -> list[dict[str, Any]]:
    """The task on every CPU but the crashing task's, and (``backtraces``) its backtrace
    from the saved registers."""
    from drgn.helpers.linux.sched import cpu_curr

    from kdumpkit.analyze.commands.common import for_each_cpu_in_dump

    panic_cpu = crashing["cpu"] if crashing else None
    others = []
    try:
        cpus = for_each_cpu_in_dump(prog)
        typed = True
    except (LookupError, drgn.FaultError):
        cpus = sorted(_cpu_pids(prog))
        typed = False
    for cpu in cpus:
        if cpu == panic_cpu:
            continue
        summary: dict[str, Any] | None
        if typed:
            current = _safely(f"cpu {cpu}", errors, cpu_curr, prog, cpu)
            if current is None:
                continue
            summary = _safely(f"cpu {cpu}", errors, _task_summary, prog, current)
            if summary is None:
                continue
        else:
            summary = {"pid": _cpu_pids(prog).get(cpu), "comm": None, "task": None}
            current = None
        summary["cpu"] = cpu
        if backtraces:
            summary["backtrace"] = _safely(
                f"backtrace of cpu {cpu}", errors, backtrace, prog, current, cpu, default=[]
            )
        others.append(summary)
    return others


# --- rendering ---------------------------------------------------------------------------


def _frame_text(index: int, frame: dict[str, Any]) -> str:
    """crash's frame line: `` #1 [sp] function at pc [module]``."""
    name = frame.get("function") or "?"
    pc = frame.get("pc")
    text = f"{'#' + str(index):>3} "
    if frame.get("sp") is not None:
        text += f"[{frame['sp']:x}] "
    text += name
    if pc is not None:
        text += f" at {pc:x}"
    if frame.get("module"):
        text += f" [{frame['module']}]"
    return text


def _task_text(title: str, task: dict[str, Any]) -> list[str]:
    comm = f' "{task["comm"]}"' if task.get("comm") else ""
    where = f" (task {task['task']:x})" if task.get("task") is not None else ""
    lines = [f"{title}: PID {task['pid']}{comm} on CPU {task['cpu']}{where}"]
    frames = task.get("backtrace") or []
    if not frames:
        return [*lines, "  (no backtrace)"]
    for index, frame in enumerate(frames):
        lines.append(_frame_text(index, frame))
        if frame.get("registers"):
            lines += _register_text(frame["registers"])
    return lines


def _register_text(registers: dict[str, int]) -> list[str]:
    """An exception frame's registers in crash's ``bt`` layout."""
    try:
        from kdumpkit.analyze.commands.bt import register_lines

        return register_lines(registers)
    except (ImportError, KeyError):
        return ["    " + "  ".join(f"{k.upper()}: {v:x}" for k, v in sorted(registers.items()))]


def render_text(report: dict[str, Any]) -> str:
    """The report for a terminal."""
    taint = report.get("taint") or {}
    signature = report.get("signature")
    live = bool(report.get("live"))
    taint_text = f"Tainted: {taint['letters']}" if taint.get("tainted") else "Not tainted"
    lines = [
        "LIVE KERNEL REPORT (the running kernel, /proc/kcore)" if live else "KERNEL CRASH REPORT",
        f"     release: {report.get('release')}",
        f"     version: {report.get('version')}",
        f"     machine: {report.get('machine')}  ({report.get('cpus')} CPUs)",
        f"{'time' if live else 'crash time':>12}: {report.get('crash_date')}",
        f"      uptime: {report.get('uptime')}",
    ]
    if not live:
        lines.append(f"       panic: {report.get('panic') or '(no panic message in the log)'}")
    lines.append(f"     tainted: {taint_text}")
    if signature:
        lines += [
            f"   signature: {signature['sha256']}",
            f"              ({' < '.join(signature['frames']) or signature['basis']})",
        ]
    lines.append("")
    if live:
        for t in report.get("running", []):
            where = f" (task {t['task']:x})" if t.get("task") is not None else ""
            lines.append(f'Running on CPU {t["cpu"]}: PID {t["pid"]} "{t["comm"]}"{where}')
    elif report.get("crashing_task"):
        lines += _task_text("Crashing task", report["crashing_task"])
    else:
        lines.append("Crashing task: not found")
    for other in report.get("other_cpus", []):
        lines += ["", *_task_text(f"CPU {other['cpu']}", other)]
    count, shown = report.get("blocked_count", 0), report.get("blocked_tasks", [])
    lines += ["", f"Blocked tasks (uninterruptible sleep): {count or 'none'}"]
    if count > len(shown):
        lines.append(f"  (the first {len(shown)} shown)")
    for task in shown:
        lines += _task_text("Blocked", task)
    lines += ["", f"Modules ({len(report.get('modules', []))}):"]
    lines += [
        f"  {m['name']:<24} {m['base']:016x} {m['size']:>8}"
        + (f"  [{m['taints']}]" if m["taints"] else "")
        for m in report.get("modules", [])
    ]
    lines += ["", f"Last {len(report.get('log_tail', []))} log lines:"]
    lines += report.get("log_tail", [])
    if report.get("errors"):
        lines += ["", "Could not read:"] + [f"  {e}" for e in report["errors"]]
    return "\n".join(lines) + "\n"


def render_json(report: dict[str, Any]) -> str:
    """The report as JSON (addresses as integers)."""
    return json.dumps(report, indent=2, sort_keys=True) + "\n"


def render_html(report: dict[str, Any]) -> str:
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
    if report.get("live"):
        title = esc(f"Live kernel: {report.get('release') or ''}")
    else:
        title = esc(f"Kernel crash: {report.get('panic') or report.get('release') or ''}")
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{title}</title>"
        "<style>body{font-family:sans-serif} th{text-align:right;padding-right:1em}"
        " pre{background:#f4f4f4;padding:.5em}</style></head><body>"
        f"<h1>{title}</h1><table>{rows}</table>{body}</body></html>\n"
    )
