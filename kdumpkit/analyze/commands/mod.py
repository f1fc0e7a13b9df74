"""``mod``: the loaded modules as crash lists them."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from kdumpkit.analyze.commands.base import Command, Result, register

if TYPE_CHECKING:
    from drgn import Object, Program


def has_module_memory(prog: Program) -> bool:
    """Whether modules are laid out as ``mem[]`` regions (v6.4+), whose text base crash
    labels TEXT_BASE."""
    try:
        return prog.type("struct module").has_member("mem")
    except LookupError:
        return False


def module_base_size(module: Object) -> tuple[int, int]:
    """The module's core base address and size."""
    try:
        layout = module.core_layout
    except AttributeError:
        # Linux kernel commit ac3b43283923 ("module: replace module_layout with
        # module_memory") (v6.4): the text region's base, all core regions' sizes.
        prog = module.prog_
        text = module.mem[prog.constant("MOD_TEXT").value_()]
        size = sum(
            module.mem[prog.constant(name).value_()].size.value_()
            for name in ("MOD_TEXT", "MOD_DATA", "MOD_RODATA", "MOD_RO_AFTER_INIT")
        )
        return text.base.value_(), size
    return layout.base.value_(), layout.size.value_()


def module_table(prog: Program) -> list[dict[str, Any]]:
    """Every loaded module: address of its struct module, name, base, size, taint."""
    from drgn.helpers.linux.module import for_each_module, module_taints

    rows = []
    for module in for_each_module(prog):
        base, size = module_base_size(module)
        try:
            taints = module_taints(module)
        except LookupError:
            taints = ""
        rows.append(
            {
                "module": module.value_(),
                "name": module.name.string_().decode("utf-8", "replace"),
                "base": base,
                "size": size,
                "taints": taints,
            }
        )
    rows.sort(key=lambda row: row["module"])
    return rows


def render_table(rows: list[dict[str, Any]], base_label: str) -> str:
    """crash's ``mod`` table: the NAME and SIZE columns as wide as their longest values."""
    width = max([len("NAME"), *(len(row["name"]) for row in rows)])
    size_width = max([len("SIZE"), *(len(str(row["size"])) for row in rows)])
    lines = [
        f"{'MODULE':^16}  {'NAME':<{width}}  {base_label:^16}  {'SIZE':>{size_width}}  OBJECT FILE"
    ]
    # crash loads no module objects: their symbols come from kallsyms
    lines += [
        f"{row['module']:016x}  {row['name']:<{width}}  {row['base']:016x}"
        f"  {row['size']:>{size_width}}  (not loaded)  [CONFIG_KALLSYMS]"
        for row in rows
    ]
    return "\n".join(lines) + "\n"


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
        rows = module_table(prog)
        if args.taint:
            tainting = [r for r in rows if r["taints"]]
            if not tainting:
                return Result("no tainted modules\n", [])
            text = "NAME                    TAINTS\n" + "".join(
                f"{r['name']:<23} {r['taints']}\n" for r in tainting
            )
            return Result(text, tainting)
        label = "TEXT_BASE" if has_module_memory(prog) else "BASE"
        return Result(render_table(rows, label), rows)
