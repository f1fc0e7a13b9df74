"""``kdumpkit dmesg DUMP [OUT]``: the kernel log saved in a dump, as makedumpfile --dump-dmesg."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from kdumpkit.kernel.printk import get_printk_records, render_dmesg
from kdumpkit.kernel.vmcoreinfo_scan import open_kernel_dump

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


def write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name in the same folder and a rename."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def run(args: argparse.Namespace) -> int:
    """Read the log from the dump and write it."""
    with open_kernel_dump(args.dump) as dump:
        text = render_dmesg(get_printk_records(dump), caller_id=args.caller_id)
    if args.out is None or args.out == "-":
        sys.stdout.buffer.write(text)
        sys.stdout.buffer.flush()
    else:
        write_atomically(args.out, text)
    return 0
