"""``log``: the kernel message buffer, as crash and makedumpfile --dump-dmesg print it."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from kdumpkit.analyze.commands.base import Command, CommandError, Result, register
from kdumpkit.analyze.crashformat import date_text, log_line
from kdumpkit.analyze.facts.clock import boot_seconds
from kdumpkit.analyze.facts.log import audit_records, log_records

if TYPE_CHECKING:
    from drgn import Program


@register
class Log(Command):
    """crash's ``log`` (-t, -m, -c, -d, -T, -a)."""

    name = "log"
    help = "dump system message buffer"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "-t", dest="no_timestamps", action="store_true", help="do not show timestamps"
        )
        parser.add_argument(
            "-m", dest="level", action="store_true", help="show each message's log level"
        )
        parser.add_argument(
            "-c", dest="caller", action="store_true", help="show the caller (thread or CPU id)"
        )
        parser.add_argument(
            "-d",
            dest="dictionary",
            action="store_true",
            help="each record's dictionary (SUBSYSTEM=, DEVICE=)",
        )
        parser.add_argument(
            "-T", dest="human", action="store_true", help="human-readable timestamps"
        )
        parser.add_argument(
            "-a", dest="audit", action="store_true", help="the audit messages auditd has not read"
        )

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        if args.audit:
            audit = audit_records(prog)
            if audit is None:
                raise CommandError(
                    "-a option not supported or applicable on this architecture or kernel"
                )
            if not audit:
                raise CommandError("kernel audit log is empty")
            text = "".join(f"type={r.type} {r.text}\n" for r in audit)
            return Result(text, [r.to_json() for r in audit])
        records = log_records(prog)
        if args.human:
            boot = boot_seconds(prog)
            text = "".join(
                f"[{date_text(boot + r.timestamp_ns // 1_000_000_000)}] "
                + log_line(r, timestamps=False, level=args.level, caller=args.caller).replace(
                    "\n", "\n" + " " * 31
                )
                + "\n"
                for r in records
            )
            return Result(text, [r.to_json() for r in records])
        text = "".join(
            log_line(
                r,
                timestamps=not args.no_timestamps,
                level=args.level,
                caller=args.caller,
                dictionary=args.dictionary,
            )
            + "\n"
            for r in records
        )
        return Result(text, [r.to_json() for r in records])
