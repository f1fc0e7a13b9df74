"""``mod``: the loaded modules as crash lists them."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from kdumpkit.analyze.commands.base import Command, Result, register
from kdumpkit.analyze.crashformat import module_table
from kdumpkit.analyze.facts.modules import has_module_memory, loaded_modules

if TYPE_CHECKING:
    from drgn import Program


@register
class Mod(Command):
    """crash's ``mod`` (and ``mod -t``)."""

    name = "mod"
    help = "module information"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "-t", dest="taint", action="store_true", help="show the modules that taint the kernel"
        )

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        modules = loaded_modules(prog)
        if args.taint:
            tainting = [m for m in modules if m.taints]
            if not tainting:
                return Result("no tainted modules\n", [])
            text = "NAME                    TAINTS\n" + "".join(
                f"{m.name:<23} {m.taints}\n" for m in tainting
            )
            return Result(text, [m.to_json() for m in tainting])
        label = "TEXT_BASE" if has_module_memory(prog) else "BASE"
        return Result(module_table(modules, label), [m.to_json() for m in modules])
