"""``kdumpkit setup [--apply]``: reserve memory at boot and install the units (dry run first)."""

from __future__ import annotations

import argparse
import shlex

from kdumpkit.service.bootloader import bootloader_changes, bootloader_revert
from kdumpkit.service.changes import Changes, apply_changes, missing_commands
from kdumpkit.service.crashkernel import Crashkernel, effective_crashkernel, parse_crashkernel
from kdumpkit.service.errors import CrashkernelError
from kdumpkit.service.estimate import estimate_machine
from kdumpkit.service.host import Host
from kdumpkit.service.systemd import systemd_changes, systemd_revert

HELP = "reserve memory and enable the kdumpkit units (dry run first)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``setup``."""
    parser.add_argument(
        "--apply",
        action="store_true",
        help="write the files and run the commands (default: show them)",
    )
    parser.add_argument(
        "--crashkernel",
        metavar="VALUE",
        help="reserve this instead of the estimate (e.g. 1G-64G:384M,64G-:512M)",
    )
    parser.add_argument(
        "--revert",
        action="store_true",
        help="undo what setup --apply did (dry run unless --apply): units disabled and "
        "removed, the GRUB drop-in removed",
    )
    parser.add_argument("--no-bootloader", action="store_true", help="leave the boot loader alone")
    parser.add_argument("--no-units", action="store_true", help="leave systemd alone")
    parser.add_argument("--config", help="config file (default /etc/kdumpkit.toml)")
    parser.add_argument("--root", default="/", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Gather every change, then show it (dry run) or make it (--apply)."""
    host = Host(args.root)
    if args.revert:
        return _revert(host, args)
    config = host.load_config(args.config)
    value: Crashkernel | None
    if args.crashkernel:
        value = parse_crashkernel(args.crashkernel)
    else:
        value = estimate_machine(host, config).value
        assert value is not None
    changes = Changes()
    for part in (
        None if args.no_bootloader else bootloader_changes(host, value),
        None if args.no_units else systemd_changes(host, config),
    ):
        if part is not None:
            changes.add(part)
    print(f"crashkernel={value}")
    if not _show_or_apply(host, changes, args.apply):
        return 0
    try:
        current = effective_crashkernel(host.cmdline())
    except CrashkernelError:
        current = None
    if not args.no_bootloader and (current is None or str(current) != str(value)):
        print(f"reboot for crashkernel={value} to take effect")
    else:
        print("done; `kdumpkit load` (or the kdumpkit-load unit) arms kdump now")
    return 0


def _show_or_apply(host: Host, changes: Changes, apply: bool) -> bool:
    """Make the changes (True), or show them as a dry run (False)."""
    if not apply:
        _show(changes)
        return False
    for note in changes.notes:
        print(f"note: {note}")
    apply_changes(host, changes)
    return True


def _show(changes: Changes) -> None:
    """The dry run: notes, diffs and commands, nothing changed."""
    for note in changes.notes:
        print(f"note: {note}")
    for command in changes.before:
        print(f"would run: {shlex.join(command)}")
    for change in changes.files:
        print(change.diff() if change.changed else f"{change.path}: unchanged")
    for command in changes.commands:
        print(f"would run: {shlex.join(command)}")
    for name in missing_commands(changes):
        print(f"warning: {name} is not on PATH; --apply would stop before changing anything")
    print("dry run: nothing changed; run again with --apply")


def _revert(host: Host, args: argparse.Namespace) -> int:
    """``setup --revert``: take kdumpkit's boot-loader and systemd changes back."""
    changes = Changes()
    if not args.no_units:
        changes.add(systemd_revert(host))
    if not args.no_bootloader:
        changes.add(bootloader_revert(host))
    if not changes.files and not changes.commands and not changes.before:
        for note in changes.notes:
            print(f"note: {note}")
        print("nothing to revert: kdumpkit's units and GRUB drop-in are not installed")
        return 0
    if not _show_or_apply(host, changes, args.apply):
        return 0
    print("reverted; the memory stays reserved until the next boot")
    return 0
