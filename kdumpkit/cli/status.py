"""``kdumpkit status [--json]``: is a capture kernel loaded, and how much memory is reserved."""

from __future__ import annotations

import argparse
import json

from kdumpkit.service.crashkernel import effective_crashkernel, format_size
from kdumpkit.service.errors import CrashkernelError
from kdumpkit.service.host import Host
from kdumpkit.service.plan import recorded_load

HELP = "is a capture kernel loaded, and how much memory is reserved"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``status``."""
    parser.add_argument("--json", action="store_true", help="print the state as JSON")
    parser.add_argument("--root", default="/", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Print the state; exit 0 when armed (a capture kernel is loaded), else 1 (like kdumpctl)."""
    host = Host(args.root)
    loaded = host.crash_loaded()
    reserved = host.crash_size()
    try:
        option = effective_crashkernel(host.cmdline())
        option_text = f"crashkernel={option}" if option else None
    except CrashkernelError as exc:
        option_text = f"invalid: {exc}"
    regions = host.crash_regions()
    record = recorded_load(host) if loaded else None
    if args.json:
        print(
            json.dumps(
                {
                    "kexec": loaded is not None,
                    "loaded": bool(loaded),
                    "reserved": reserved,
                    "crashkernel": option_text,
                    "regions": [[start, end] for start, end in regions],
                    "vmcore": host.exists("/proc/vmcore"),
                    "load": record,
                },
                indent=2,
            )
        )
        return 0 if loaded else 1
    if loaded is None:
        print(f"kexec:        not supported by this kernel ({host.kernel_release()})")
    else:
        print(f"capture kernel: {'loaded' if loaded else 'not loaded'}")
        if record:
            print(
                f"  kernel {record.get('kernel')}, initrd {record.get('initrd')}, "
                f"via {record.get('method')}"
            )
            print(f"  cmdline {record.get('cmdline')}")
        print(
            f"reserved:     {format_size(reserved) if reserved else 'nothing'}"
            + "".join(f"  [{start:#x}-{end:#x}]" for start, end in regions)
        )
    print(f"command line: {option_text or 'no crashkernel='}")
    if host.exists("/proc/vmcore"):
        print("/proc/vmcore exists: this is a capture kernel (kdumpkit collect saves it)")
    return 0 if loaded else 1
