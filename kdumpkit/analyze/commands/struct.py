"""``struct``, ``union``, ``p``, ``whatis``: types from BTF (or DWARF), values from memory.

``struct -o`` (member offsets) is ours, in crash's layout; the rest is drgn's crash
compatibility layer, whose output follows crash's."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import drgn

from kdumpkit.analyze.commands.base import CommandError, Result, register
from kdumpkit.analyze.commands.drgn_crash import DrgnCrashCommand

if TYPE_CHECKING:
    from drgn import Program


def _member_declaration(member: drgn.TypeMember) -> str:
    """``struct list_head *next;`` or ``unsigned int flag : 1;``."""
    text = member.type.variable_declaration(member.name or "")
    if member.bit_field_size:
        text += f" : {member.bit_field_size}"
    return text + ";"


def offsets_text(type_: drgn.Type) -> str:
    """crash's ``struct -o``: each member with its offset in brackets, then SIZE."""
    kind = "union" if type_.kind == drgn.TypeKind.UNION else "struct"
    lines = [f"{kind} {type_.tag or ''} {{".replace("  ", " ")]
    members = type_.members or ()
    width = max((len(str(m.bit_offset // 8)) for m in members), default=1) + 2
    for member in members:
        offset = member.bit_offset // 8
        label = f"[{offset}]"
        lines.append(f"  {label:>{width}} {_member_declaration(member)}")
    lines += ["}", f"SIZE: {type_.size}"]
    return "\n".join(lines) + "\n"


class _Aggregate(DrgnCrashCommand):
    keyword = "struct"

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        argv = list(args.argv)
        if "-o" in argv:
            argv.remove("-o")
            if len(argv) != 1:
                raise CommandError(f"usage: {self.name} -o {self.keyword}_name")
            try:
                type_ = prog.type(f"{self.keyword} {argv[0]}")
            except LookupError:
                raise CommandError(f"invalid data structure reference: {argv[0]}") from None
            text = offsets_text(type_)
            rows = [{"name": m.name, "offset": m.bit_offset // 8,
                     "type": m.type.type_name()} for m in type_.members or ()]
            return Result(text, rows)
        return super().run(prog, args)


@register
class Struct(_Aggregate):
    """crash's ``struct``."""

    name = "struct"
    help = "structure contents (-o NAME: member offsets)"
    keyword = "struct"


@register
class Union(_Aggregate):
    """crash's ``union``."""

    name = "union"
    help = "union contents (-o NAME: member offsets)"
    keyword = "union"


@register
class Print(DrgnCrashCommand):
    """crash's ``p`` (drgn's rendering of the value)."""

    name = "p"
    help = "print the value of an expression"


@register
class Whatis(DrgnCrashCommand):
    """crash's ``whatis``."""

    name = "whatis"
    help = "type or symbol definition"
