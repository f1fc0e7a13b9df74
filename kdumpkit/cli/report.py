"""``kdumpkit report DUMP [VMLINUX] [--json|--html]``: the one-page triage report."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from kdumpkit.cli.output import DamageWarnings, add_zero_excluded, warn_damage
from kdumpkit.dump.errors import DumpError

if TYPE_CHECKING:
    from kdumpkit.analyze.report import Report

HELP = "one-page triage report: why did this kernel die?"
#: Log lines in the report (as the full report's tail).
LOG_TAIL = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verb's arguments."""
    parser.add_argument("dump", metavar="DUMP", help="the dump (ELF, kdump-compressed, flattened)")
    parser.add_argument("vmlinux", metavar="VMLINUX", nargs="?", help="a vmlinux with DWARF")
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="JSON instead of text")
    form.add_argument("--html", action="store_true", help="a standalone HTML page")
    parser.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    add_zero_excluded(parser)


def log_only_report(path: str, damage: DumpError) -> Report | None:
    """When the kernel's types or symbols cannot be set up (damaged kallsyms, BTF, page
    tables), what the dump still says without them: its header, VMCOREINFO and kernel
    log (read from VMCOREINFO alone, as ``dmesg``), the panic line from the log.  None
    when the log cannot be read either."""
    from kdumpkit.analyze.report import Report, panic_from_log
    from kdumpkit.kernel.printk import format_record, get_printk_records
    from kdumpkit.kernel.vmcoreinfo_scan import open_kernel_dump

    try:
        with open_kernel_dump(path) as dump:
            records = get_printk_records(dump)
            vmci = dump.vmcoreinfo
            uts = dump.header.utsname
            crash_time = vmci.crashtime if vmci else None
            release = (vmci.osrelease if vmci else None) or uts.get("release")
            machine = uts.get("machine") or dump.header.machine
            cpus = len(dump.prstatus)
            dumpfile = dump.name
    except (DumpError, ValueError, OverflowError):
        return None
    lines = [
        line
        for record in records
        for line in format_record(record, caller_id=False).decode("utf-8", "replace").splitlines()
    ]
    return Report(
        release=release,
        version=uts.get("version"),
        machine=machine,
        nodename=uts.get("nodename"),
        cpus=cpus,
        crash_time=crash_time,
        panic=panic_from_log(lines),
        dumpfile=dumpfile,
        log_tail=lines[-LOG_TAIL:],
        errors=[f"tasks, backtraces, modules: not read, the analysis cannot start: {damage}"],
    )


def run(args: argparse.Namespace) -> int:
    """Open the dump, gather the report and print it."""
    from kdumpkit.analyze.report import gather_report, render_html, render_json, render_text
    from kdumpkit.analyze.session import open_for_analysis

    try:
        prog = open_for_analysis(args.dump, vmlinux=args.vmlinux, zero_excluded=args.zero_excluded)
    except DumpError as exc:
        partial = None if args.vmlinux else log_only_report(args.dump, exc)
        if partial is None:
            raise
        warn_damage("report", [f"{exc}; the report holds the log only"])
        report = partial
    else:
        warnings = DamageWarnings("report", prog)
        try:
            report = gather_report(prog)
        finally:
            warnings.finish()
    render = render_json if args.json else render_html if args.html else render_text
    text = render(report)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
    return 0
