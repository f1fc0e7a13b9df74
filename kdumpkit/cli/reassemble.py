"""``kdumpkit reassemble FLAT OUT``: a flattened dump back to its file, like ``makedumpfile -R``."""

from __future__ import annotations

import argparse
import os
import sys
import time

from kdumpkit.cli.output import replaced_on_success
from kdumpkit.dump.flat import reassemble, reassemble_stream

HELP = "turn a flattened dump into a kdump-compressed file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verb's arguments."""
    parser.add_argument("flat", metavar="FLAT", help="the flattened dump ('-' for stdin)")
    parser.add_argument("out", metavar="OUT", help="the kdump-compressed (or ELF) file to write")


def run(args: argparse.Namespace) -> int:
    """Replay the records into a temporary file, then rename it to OUT."""
    started = time.monotonic()
    with replaced_on_success([args.out], mode=0o644) as (tmp,):
        if args.flat == "-":
            fd = os.open(tmp, os.O_WRONLY)
            try:
                size = reassemble_stream(sys.stdin.buffer, fd, "<stdin>")
            finally:
                os.close(fd)
        else:
            size = reassemble(args.flat, tmp)
    print(f"{args.out}: {size} bytes in {time.monotonic() - started:.1f} s")
    return 0
