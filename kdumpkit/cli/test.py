"""``kdumpkit test --yes-crash-this-machine``: panic the kernel on purpose to test kdump."""

from __future__ import annotations

import argparse
import os
import sys

from kdumpkit.service.errors import ServiceError
from kdumpkit.service.host import Host

HELP = "crash this machine on purpose to test kdump"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``test``."""
    parser.add_argument(
        "--yes-crash-this-machine",
        action="store_true",
        help="really crash the kernel now (sysrq 'c')",
    )
    parser.add_argument(
        "--force", action="store_true", help="crash even when no capture kernel is loaded"
    )
    parser.add_argument("--root", default="/", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Refuse without the flag; otherwise enable sysrq and write 'c' to /proc/sysrq-trigger."""
    host = Host(args.root)
    if not args.yes_crash_this_machine:
        print(
            "kdumpkit test: this crashes the kernel at once (unsaved work is lost); "
            "run again with --yes-crash-this-machine",
            file=sys.stderr,
        )
        return 2
    if not host.crash_loaded() and not args.force:
        raise ServiceError(
            "no capture kernel is loaded, so the crash would not be saved; "
            "run kdumpkit load first (or pass --force)"
        )
    print(
        "syncing filesystems, enabling sysrq, then writing 'c' to /proc/sysrq-trigger", flush=True
    )
    os.sync()
    with open(host.path("/proc/sys/kernel/sysrq"), "w") as file:
        file.write("1\n")
    with open(host.path("/proc/sysrq-trigger"), "w") as file:
        file.write("c")
    return 0
