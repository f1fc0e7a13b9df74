"""``swap``: the swap devices in use, as crash lists them."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from kdumpkit.analyze.commands.base import Command, Result, register
from kdumpkit.analyze.crashformat import SWAP_HEADER, swap_row
from kdumpkit.analyze.facts.swap import swap_devices

if TYPE_CHECKING:
    from drgn import Program


@register
class Swap(Command):
    """crash's ``swap``."""

    name = "swap"
    help = "swap device information"

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        devices = swap_devices(prog)
        page_kb = prog["PAGE_SIZE"].value_() // 1024
        text = SWAP_HEADER + "\n" + "".join(swap_row(d, page_kb) + "\n" for d in devices)
        return Result(text, [d.to_json() for d in devices])
