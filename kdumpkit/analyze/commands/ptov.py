"""``ptov``: physical addresses to their direct-map virtual addresses."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from kdumpkit.analyze.commands.base import Command, CommandError, Result, register
from kdumpkit.analyze.crashformat import ptov_lines

if TYPE_CHECKING:
    from drgn import Program


@register
class Ptov(Command):
    """crash's ``ptov PADDR...``."""

    name = "ptov"
    help = "physical address to kernel virtual address"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("addresses", nargs="+", metavar="address", help="physical (hex)")

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        from drgn.helpers.linux.mm import phys_to_virt

        blocks, rows = [], []
        for text in args.addresses:
            try:
                physical = int(text.removeprefix("0x"), 16)
            except ValueError:
                raise CommandError(f"invalid physical address: {text}") from None
            virtual = phys_to_virt(prog, physical).value_()
            blocks.append("".join(line + "\n" for line in ptov_lines(physical, virtual)))
            rows.append({"physical": physical, "virtual": virtual})
        return Result("\n".join(blocks), rows)
