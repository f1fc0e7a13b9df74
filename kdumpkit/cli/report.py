"""``kdumpkit report DUMP [VMLINUX] [--json|--html]``: the one-page triage report."""

from __future__ import annotations

import argparse
import sys

from kdumpkit.cli.output import DamageWarnings, add_zero_excluded

HELP = "one-page triage report: why did this kernel die?"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verb's arguments."""
    parser.add_argument("dump", metavar="DUMP", help="the dump (ELF, kdump-compressed, flattened)")
    parser.add_argument("vmlinux", metavar="VMLINUX", nargs="?", help="a vmlinux with DWARF")
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="JSON instead of text")
    form.add_argument("--html", action="store_true", help="a standalone HTML page")
    parser.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    add_zero_excluded(parser)


def run(args: argparse.Namespace) -> int:
    """Open the dump, gather the report and print it."""
    from kdumpkit.analyze.report import gather_report, render_html, render_json, render_text
    from kdumpkit.analyze.session import open_for_analysis

    prog = open_for_analysis(args.dump, vmlinux=args.vmlinux, zero_excluded=args.zero_excluded)
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
