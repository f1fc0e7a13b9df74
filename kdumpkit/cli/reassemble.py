"""``kdumpkit reassemble FLAT OUT``: a flattened dump back to its file, like ``makedumpfile -R``."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from kdumpkit.dump.flat import reassemble, reassemble_stream

HELP = "turn a flattened dump into a kdump-compressed file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verb's arguments."""
    parser.add_argument("flat", metavar="FLAT", help="the flattened dump ('-' for stdin)")
    parser.add_argument("out", metavar="OUT", help="the kdump-compressed (or ELF) file to write")


def run(args: argparse.Namespace) -> int:
    """Replay the records into a temporary file, then rename it to OUT."""
    folder = os.path.dirname(os.path.abspath(args.out))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(args.out)}.", suffix=".tmp")
    started = time.monotonic()
    try:
        if args.flat == "-":
            try:
                size = reassemble_stream(sys.stdin.buffer, fd, "<stdin>")
            finally:
                os.close(fd)
        else:
            os.close(fd)
            size = reassemble(args.flat, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, args.out)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    print(f"{args.out}: {size} bytes in {time.monotonic() - started:.1f} s")
    return 0
