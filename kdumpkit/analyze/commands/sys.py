"""``sys``: the system summary crash prints at start-up and on demand."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from kdumpkit.analyze.commands.base import Command, Result, register
from kdumpkit.analyze.crashformat import date_text, format_pairs, sys_pairs
from kdumpkit.analyze.facts.clock import hz_from_boottime as hz_from_boottime
from kdumpkit.analyze.facts.clock import jiffies_hz as jiffies_hz
from kdumpkit.analyze.facts.system import system_info
from kdumpkit.analyze.facts.taint import kernel_taint

if TYPE_CHECKING:
    from drgn import Program


@register
class Sys(Command):
    """crash's ``sys`` (and ``sys -t``, ``sys config``)."""

    name = "sys"
    help = "system data"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-t", dest="taint", action="store_true", help="taint flags")
        parser.add_argument(
            "config",
            nargs="?",
            choices=("config",),
            help="the kernel's build configuration (CONFIG_IKCONFIG)",
        )

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        if args.config:
            from drgn.helpers.linux.kconfig import get_kconfig

            config = get_kconfig(prog)
            return Result("".join(f"{k}={v}\n" for k, v in config.items()), [dict(config)])
        if args.taint:
            taint = kernel_taint(prog)
            return Result(f"TAINTED_MASK: {taint.mask:x}  {taint.letters}\n", [taint.to_json()])
        info = system_info(prog)
        row = {**info.to_json(), "date": date_text(info.timestamp)}
        return Result(format_pairs(sys_pairs(info)), [row])
