"""``struct``, ``union``, ``p``, ``whatis``: types from BTF (or DWARF), values from memory.

``struct -o`` (member offsets), ``struct NAME[.member,...] ADDRESS`` and ``p EXPRESSION``
are ours and print values as crash does (gdb's notation: :mod:`gdbvalue`); other forms
(counts, per-cpu ``p name:cpus``, ``whatis``) go to drgn's crash compatibility layer."""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

import drgn

from kdumpkit.analyze.commands.base import CommandError, Result, register
from kdumpkit.analyze.commands.common import parse_address
from kdumpkit.analyze.commands.drgn_crash import DrgnCrashCommand
from kdumpkit.analyze.commands.gdbvalue import (
    STRUCT_SPEC,
    aggregate_text,
    top_level_text,
)
from kdumpkit.analyze.context import next_value_number
from kdumpkit.analyze.crashformat import type_definition
from kdumpkit.analyze.facts.cpus import for_each_cpu_in_dump
from kdumpkit.analyze.stack import kernel_symbol

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


_NAME = r"[A-Za-z_]\w*"
#: ``p`` expressions handled here: ``[&|*]symbol`` then ``.member``, ``->member``, ``[N]``.
_P_EXPRESSION = re.compile(rf"(?P<prefix>[&*]?)(?P<name>{_NAME})"
                           rf"(?P<path>(?:\.{_NAME}|->{_NAME}|\[\d+\])*)")  # fmt: skip
_P_STEP = re.compile(rf"\.({_NAME})|->({_NAME})|\[(\d+)\]")


def _radix(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without ``-x``/``-d``, and whether integers are to be hexadecimal."""
    hexadecimal = "-x" in argv
    return [word for word in argv if word not in ("-x", "-d")], hexadecimal


class _Aggregate(DrgnCrashCommand):
    keyword = "struct"

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        argv = list(args.argv)
        words, hexadecimal = _radix(argv)
        if len(words) == 2 and not words[0].startswith("-") and STRUCT_SPEC.fullmatch(words[0]):
            address = parse_address(prog, words[1])
            text = aggregate_text(prog, self.keyword, words[0], address, hexadecimal)
            return Result(text, [{"spec": words[0], "address": address, "text": text}])
        if "-o" in argv:
            argv.remove("-o")
            if len(argv) != 1:
                raise CommandError(f"usage: {self.name} -o {self.keyword}_name")
            try:
                type_ = prog.type(f"{self.keyword} {argv[0]}")
            except LookupError:
                raise CommandError(f"invalid data structure reference: {argv[0]}") from None
            text = offsets_text(type_)
            rows = [
                {"name": m.name, "offset": m.bit_offset // 8, "type": m.type.type_name()}
                for m in type_.members or ()
            ]
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


def percpu_text(prog: Program, name: str, obj: drgn.Object) -> str | None:
    """crash's answer to ``p`` of a per-cpu variable: its type and each CPU's address,
    or None when ``obj`` is not one (per-cpu symbols are offsets below __per_cpu_end)."""
    try:
        end = prog.symbol("__per_cpu_end").address
    except LookupError:
        return None
    if obj.address_ is None or obj.address_ >= end:
        return None
    offsets = prog["__per_cpu_offset"]
    lines = ["PER-CPU DATA TYPE:", f"  {obj.type_.variable_declaration(name)};",
             "PER-CPU ADDRESSES:"]  # fmt: skip
    for cpu in for_each_cpu_in_dump(prog):
        address = (offsets[cpu].value_() + obj.address_) & 0xFFFFFFFFFFFFFFFF
        lines.append(f"  [{cpu}]: {address:x}")
    return "\n".join(lines) + "\n"


def evaluate(prog: Program, expression: str) -> drgn.Object | None:
    """The value of a ``p`` expression of the forms handled here, or None."""
    match = _P_EXPRESSION.fullmatch(expression)
    if match is None:
        return None
    try:
        obj = prog[match["name"]]
    except LookupError:
        raise CommandError(f'no symbol "{match["name"]}" in current context.') from None
    try:
        for member, arrow, index in _P_STEP.findall(match["path"]):
            obj = obj[int(index)] if index else obj.member_(member or arrow)
        if match["prefix"] == "&":
            return obj.address_of_()
        if match["prefix"] == "*":
            return obj[0]
    except (LookupError, TypeError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    return obj


@register
class Print(DrgnCrashCommand):
    """crash's ``p``: ``name = $N = value`` for a symbol, ``$N = value`` for an expression."""

    name = "p"
    help = "print the value of an expression"

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        words, hexadecimal = _radix(list(args.argv))
        obj = evaluate(prog, words[0]) if len(words) == 1 else None
        if obj is None:  # per-cpu forms and what the pattern does not cover
            return super().run(prog, args)
        symbol = re.fullmatch(_NAME, words[0]) is not None  # not an expression on it
        if symbol:
            percpu = percpu_text(prog, words[0], obj)
            if percpu is not None:
                return Result(percpu, [{"expression": words[0], "percpu": True}])
        try:
            text = top_level_text(obj, hexadecimal)
        except drgn.FaultError as exc:
            raise CommandError(f"Cannot access memory at address 0x{exc.address:x}") from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        number = next_value_number(prog)
        if symbol:
            # crash starts an array symbol's value on a line of its own.
            array = obj.type_.unaliased_kind() == drgn.TypeKind.ARRAY
            separator = "\n " if array and not text.startswith('"') else ""
            line = f"{words[0]} = ${number} = {separator}{text}\n"
        else:
            line = f"${number} = {text}\n"
        return Result(line, [{"expression": words[0], "number": number, "value": text}])


@register
class Whatis(DrgnCrashCommand):
    """crash's ``whatis``: a type's definition here; a symbol's, and the options, by
    drgn."""

    name = "whatis"
    help = "type or symbol definition"

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        words = list(args.argv)
        type_ = _named_type(prog, words)
        if type_ is None:
            return super().run(prog, args)
        text = type_definition(type_)
        return Result(text, [{"type": type_.type_name(), "size": drgn.sizeof(type_), "text": text}])


def _named_type(prog: Program, words: list[str]) -> drgn.Type | None:
    """The type ``whatis`` names: ``struct X``, ``union X``, ``enum X``, or a bare name of
    a typedef, base type, structure, union or enumeration; None if it names none."""
    if len(words) == 2 and words[0] in ("struct", "union", "enum"):
        candidates = [" ".join(words)]
    elif len(words) == 1 and re.fullmatch(r"[A-Za-z_]\w*", words[0]):
        if kernel_symbol(prog, words[0]) is not None:
            return None  # a variable or function of that name wins, as in crash
        candidates = [words[0], *(f"{kw} {words[0]}" for kw in ("struct", "union", "enum"))]
    else:
        return None
    for name in candidates:
        try:
            return prog.type(name)
        except LookupError:
            continue
    return None
