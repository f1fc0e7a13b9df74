"""``log``: the kernel message buffer, as crash and makedumpfile --dump-dmesg print it."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from kdumpkit.analyze.commands.base import Command, Result, register

if TYPE_CHECKING:
    from drgn import Program


#: caller_id's top bit: the record was logged from a CPU context, not a task (printk.c)
CALLER_IS_CPU = 0x80000000


def _records_from_vmcoreinfo(prog: Program) -> list[dict[str, Any]]:
    """The log read with VMCOREINFO's layouts alone (no types), from the dump itself."""
    from kdumpkit.kernel.printk import get_printk_records

    dump = prog.cache.get("kdumpkit.dump")
    if dump is None:
        raise LookupError("no types for the printk ring buffer and no dump to read it from")
    records = []
    for record in get_printk_records(dump):
        caller = record.caller_id
        records.append(
            {
                "timestamp_ns": record.ts_nsec,
                "level": record.level,
                "facility": record.facility,
                "caller_tid": caller if caller is not None and not caller & CALLER_IS_CPU else None,
                "caller_cpu": caller & ~CALLER_IS_CPU
                if caller and caller & CALLER_IS_CPU
                else None,
                "text": record.text.decode("utf-8", "replace"),
                "dict": dict(record.dict),
            }
        )
    return records


def log_records(prog: Program) -> list[dict[str, Any]]:
    """Every printk record: timestamp (ns), level, facility, caller and text."""
    from drgn.helpers.linux.printk import get_printk_records

    try:
        drgn_records = get_printk_records(prog)
    except LookupError:
        # No type for the ring buffer (a kernel without BTF, no vmlinux).
        return _records_from_vmcoreinfo(prog)
    records = []
    for record in drgn_records:
        records.append(
            {
                "timestamp_ns": record.timestamp,
                "level": record.level,
                "facility": record.facility,
                "caller_tid": record.caller_tid,
                "caller_cpu": record.caller_cpu,
                "text": record.text.decode("utf-8", "replace"),
                "dict": {
                    key.decode("utf-8", "replace"): value.decode("utf-8", "replace")
                    for key, value in record.context.items()
                },
            }
        )
    return records


def format_record(
    record: dict[str, Any],
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
        seconds, nanos = divmod(record["timestamp_ns"], 1_000_000_000)
        prefix = f"[{seconds:>5}.{nanos // 1000:06d}] "
    if caller:
        if record["caller_tid"] is not None:
            prefix += f"[{'T' + str(record['caller_tid']):>6}] "
        elif record["caller_cpu"] is not None:
            prefix += f"[{'C' + str(record['caller_cpu']):>6}] "
    if level:
        prefix += f"<{record['level']}>"
    # A record's continuation lines are indented under its text, as crash does.
    text = prefix + record["text"].replace("\n", "\n" + " " * len(prefix))
    if dictionary:
        text += "".join(
            f"\n{' ' * len(prefix)}{key}={value}" for key, value in record.get("dict", {}).items()
        )
    return text


@register
class Log(Command):
    """crash's ``log`` (-t, -m, -c, -d, -T)."""

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

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        records = log_records(prog)
        if args.human:
            boot = boot_seconds(prog)
            text = "".join(
                f"[{date_text(boot + r['timestamp_ns'] // 1_000_000_000)}] "
                + format_record(r, timestamps=False, level=args.level, caller=args.caller).replace(
                    "\n", "\n" + " " * 31
                )
                + "\n"
                for r in records
            )
            return Result(text, records)
        text = "".join(
            format_record(
                r,
                timestamps=not args.no_timestamps,
                level=args.level,
                caller=args.caller,
                dictionary=args.dictionary,
            )
            + "\n"
            for r in records
        )
        return Result(text, records)


def boot_seconds(prog: Program) -> int:
    """The wall-clock second of boot as crash counts it for ``log -T``: the crash's
    DATE less the whole seconds of UPTIME (each record then adds its whole seconds)."""
    from kdumpkit.analyze.commands.sys import crash_time, uptime_seconds

    return crash_time(prog) - uptime_seconds(prog)


def date_text(timestamp: int) -> str:
    """``Thu Nov 26 08:41:23 UTC 2026``, as sys prints DATE."""
    from kdumpkit.analyze.commands.sys import date_text as sys_date_text

    return sys_date_text(timestamp)
