"""``kdumpkit load``: load the capture kernel with kexec_file_load (or kexec -p).

It prints what it loads and how, so a log of a boot (or of a test guest) shows it.
"""

from __future__ import annotations

import argparse
import shlex

from kdumpkit.service import kexec
from kdumpkit.service.errors import ServiceError
from kdumpkit.service.host import Host
from kdumpkit.service.plan import plan_load, preflight, record_load

HELP = "load the capture kernel (kexec_file_load)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``load``."""
    parser.add_argument(
        "--kernel", help="capture kernel (default: [kexec] kernel, else /boot/vmlinuz-$(uname -r))"
    )
    parser.add_argument(
        "--initrd", help="initramfs (default: [kexec] initrd, else the running kernel's)"
    )
    parser.add_argument("--no-initrd", action="store_true", help="load without an initramfs")
    parser.add_argument(
        "--append",
        action="append",
        default=[],
        metavar="PARAMS",
        help="add to the capture command line (repeatable)",
    )
    parser.add_argument(
        "--method",
        choices=("auto", "file", "load"),
        default="auto",
        help="file = kexec_file_load only, load = kexec -p (kexec_load) only, "
        "auto = file, falling back to kexec -p where allowed (default)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be loaded and check it, load nothing",
    )
    parser.add_argument("--force", action="store_true", help="skip the checks made before loading")
    parser.add_argument("--config", help="config file (default /etc/kdumpkit.toml)")
    parser.add_argument("--root", default="/", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Plan, check, load, and confirm through /sys/kernel/kexec_crash_loaded."""
    host = Host(args.root)
    config = host.load_config(args.config)
    plan = plan_load(host, config, args.kernel, args.initrd, " ".join(args.append), args.no_initrd)
    print(f"kernel:  {plan.kernel}")
    print(f"initrd:  {plan.initrd or '(none)'}")
    print(f"cmdline: {plan.cmdline}")
    problems = [] if args.force else preflight(host, plan)
    if args.dry_run:
        print("kexec_load fallback would run: " + shlex.join(kexec.kexec_tools_command(plan)))
        for problem in problems:
            print(f"would fail: {problem}")
        print("dry run: nothing loaded")
        return 1 if problems else 0
    if problems:
        raise ServiceError("; ".join(problems))
    if host.crash_loaded():
        print("a capture kernel is loaded already; replacing it")
    method = kexec.load(plan, host, args.method)
    how = "kexec_file_load" if method == "file" else "kexec -p"
    record_load(host, plan, how)
    loaded = host.crash_loaded()
    print(
        f"loaded (via {how}); kexec_crash_loaded = {'unknown' if loaded is None else int(loaded)}"
    )
    if loaded is False:
        raise ServiceError("the load reported success but /sys/kernel/kexec_crash_loaded is 0")
    return 0
