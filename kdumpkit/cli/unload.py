"""``kdumpkit unload``: unload the capture kernel."""

from __future__ import annotations

import argparse

from kdumpkit.service import kexec
from kdumpkit.service.host import Host
from kdumpkit.service.plan import forget_load

HELP = "unload the capture kernel"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``unload``."""
    parser.add_argument("--root", default="/", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Unload through kexec_file_load (or ``kexec -p -u``) and report the state after."""
    host = Host(args.root)
    method = kexec.unload(host)
    forget_load(host)
    loaded = host.crash_loaded()
    print(
        f"unloaded (via {method}); kexec_crash_loaded = "
        f"{'unknown' if loaded is None else int(loaded)}"
    )
    return 0
