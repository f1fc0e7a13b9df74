"""``kdumpkit estimate``: the crashkernel= reservation this machine needs, and why."""

from __future__ import annotations

import argparse
import json

from kdumpkit.service.crashkernel import effective_crashkernel, format_size
from kdumpkit.service.errors import CrashkernelError
from kdumpkit.service.estimate import estimate_machine
from kdumpkit.service.host import Host

HELP = "the crashkernel= reservation this machine needs"
MiB = 1 << 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``estimate``."""
    parser.add_argument("--kernel", help="capture kernel to size (default: the running one's)")
    parser.add_argument("--initrd", help="initramfs to size")
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")
    parser.add_argument("--config", help="config file (default /etc/kdumpkit.toml)")
    parser.add_argument("--root", default="/", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Print the terms, this machine's size and a range-form crashkernel= value."""
    host = Host(args.root)
    config = host.load_config(args.config)
    estimate = estimate_machine(host, config, args.kernel, args.initrd)
    reserved = host.crash_size()
    try:
        current = effective_crashkernel(host.cmdline())
    except CrashkernelError:
        current = None
    if args.json:
        print(
            json.dumps(
                {
                    "system_ram": estimate.system_ram,
                    "cpus": estimate.cpus,
                    "capture_cpus": estimate.capture_cpus,
                    "kernel": estimate.kernel.path if estimate.kernel else None,
                    "initrd": estimate.initrd.path if estimate.initrd else None,
                    "terms": dict(estimate.terms),
                    "size": estimate.size,
                    "crashkernel": str(estimate.value),
                    "reserved": reserved,
                    "current": str(current) if current else None,
                },
                indent=2,
            )
        )
        return 0
    print(
        f"RAM        {estimate.system_ram / MiB:.0f} MiB ({estimate.ram_source}), "
        f"{estimate.cpus} CPUs, the capture kernel brings up {estimate.capture_cpus}"
    )
    print(f"kernel     {estimate.kernel.path if estimate.kernel else 'not found, assumed'}")
    if estimate.initrd:
        print(f"initramfs  {estimate.initrd.path} ({estimate.initrd.how})")
    else:
        print("initramfs  not found, assumed")
    for label, size in estimate.terms:
        print(f"  {size / MiB:8.1f} MiB  {label}")
    print(f"  {'':8}      +10% headroom, rounded up to 32 MiB")
    print(
        f"this machine needs {format_size(estimate.size)}"
        + (f"; reserved now: {format_size(reserved)}" if reserved is not None else "")
        + (f" (crashkernel={current})" if current else "")
    )
    print(f"crashkernel={estimate.value}")
    return 0
