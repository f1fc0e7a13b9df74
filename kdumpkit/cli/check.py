"""``kdumpkit check [--json]``: is this machine ready for kdump, and if not, what to do."""

from __future__ import annotations

import argparse
import json

from kdumpkit.service.checks import FAIL, run_checks
from kdumpkit.service.host import Host

HELP = "is this machine ready for kdump, and if not, what to do"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``check``."""
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.add_argument(
        "--kernel",
        help="capture kernel to check (default: the loaded one, "
        "else [kexec] kernel, else the running kernel's)",
    )
    parser.add_argument("--initrd", help="initramfs to check")
    parser.add_argument("--config", help="config file (default /etc/kdumpkit.toml)")
    parser.add_argument("--root", default="/", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Print every finding; exit 1 when any item FAILs."""
    findings = run_checks(Host(args.root), args.config, args.kernel, args.initrd)
    failed = any(finding.status == FAIL for finding in findings)
    if args.json:
        print(
            json.dumps(
                {"ready": not failed, "items": [finding.as_dict() for finding in findings]},
                indent=2,
            )
        )
        return 1 if failed else 0
    width = max(len(finding.item) for finding in findings)
    for finding in findings:
        print(f"{finding.status:<4}  {finding.item:<{width}}  {finding.message}")
        if finding.fix and finding.status != "OK":
            print(f"      {'':<{width}}  fix: {finding.fix}")
    if failed:
        first = next(finding for finding in findings if finding.status == FAIL)
        count = sum(finding.status == FAIL for finding in findings)
        print(f"NOT ready for kdump ({count} FAIL): {first.message}")
    else:
        print("ready for kdump")
    return 1 if failed else 0
