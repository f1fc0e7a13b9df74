"""``kdumpkit dmesg DUMP [OUT]``: the kernel log saved in a dump, as makedumpfile --dump-dmesg."""

from __future__ import annotations

import argparse
import sys

from kdumpkit.cli.output import DamageWarnings, add_zero_excluded, replaced_on_success
from kdumpkit.dump.errors import PageNotPresentError
from kdumpkit.kernel.printk import PrintkError, get_printk_records, render_dmesg
from kdumpkit.kernel.vmcoreinfo_scan import open_kernel_dump
from kdumpkit.kernel.x86_64 import TranslationError

HELP = "print the kernel log saved in a dump"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verb's arguments."""
    parser.add_argument(
        "dump", metavar="DUMP", help="the dump (ELF, kdump-compressed or flattened)"
    )
    parser.add_argument(
        "out", metavar="OUT", nargs="?", help="write the log here (default: stdout)"
    )
    parser.add_argument(
        "--caller-id",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="print each record's caller ([T<pid>] or [C<cpu>]) where the kernel stored one, "
        "as makedumpfile 1.7.8 does (default); --no-caller-id prints as makedumpfile 1.7.2",
    )
    add_zero_excluded(parser)


def run(args: argparse.Namespace) -> int:
    """Read the log from the dump and write it."""
    with open_kernel_dump(args.dump) as dump:
        dump.zero_excluded = args.zero_excluded
        warnings = DamageWarnings("dmesg", dump=dump)
        try:
            records = get_printk_records(dump)
        except (TranslationError, PageNotPresentError) as exc:
            raise PrintkError(f"kernel log: {exc}") from None
        finally:
            warnings.finish()
        text = render_dmesg(records, caller_id=args.caller_id)
    if args.out is None or args.out == "-":
        sys.stdout.buffer.write(text)
        sys.stdout.buffer.flush()
    else:
        with replaced_on_success([args.out]) as (tmp,), open(tmp, "wb") as out:
            out.write(text)
    return 0
