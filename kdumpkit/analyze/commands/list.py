"""``list``: walk a linked list as crash does (tools.c do_list()): singly linked
structures, or list_head lists from an embedded (``-h``) or standalone (``-H``) head,
each entry optionally formatted (``-s``).  The forms not handled here (``-S``, ``-l``,
``-O``, ``-B``) go to drgn."""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

import drgn

from kdumpkit.analyze.commands.base import CommandError, Result, register
from kdumpkit.analyze.commands.common import fault_message, parse_address
from kdumpkit.analyze.commands.drgn_crash import DrgnCrashCommand
from kdumpkit.analyze.commands.gdbvalue import aggregate_text
from kdumpkit.kernel.x86_64_layout import KERNEL_SPACE_START

if TYPE_CHECKING:
    from drgn import Program

#: a list longer than this is a loop the duplicate check missed
MAX_ENTRIES = 1 << 22
_HANDLED = frozenset({"-o", "-e", "-s", "-h", "-H", "-r", "-x", "-d"})


def member_offset(prog: Program, text: str) -> int:
    """``struct.member`` (``offsetof``) or a number of bytes."""
    match = re.fullmatch(r"([A-Za-z_]\w*)\.([\w.\[\]]+)", text)
    if match:
        try:
            return drgn.offsetof(prog.type(f"struct {match[1]}"), match[2])
        except (LookupError, ValueError):
            raise CommandError(f"invalid argument: {text}") from None
    try:
        return int(text, 0)
    except ValueError:
        raise CommandError(f"invalid argument: {text}") from None


@register
class List(DrgnCrashCommand):
    """crash's ``list``."""

    name = "list"
    help = "walk a linked list (-o offset, -s struct, -h/-H list heads, -r)"

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        words: list[str] = list(args.argv)
        options: dict[str, list[str]] = {}
        positional: list[str] = []
        flags: set[str] = set()
        i = 0
        while i < len(words):
            word = words[i]
            if word in ("-o", "-e", "-s"):
                if i + 1 == len(words):
                    return super().run(prog, args)
                options.setdefault(word, []).append(words[i + 1])
                i += 2
                continue
            if word.startswith("-") and not word[1:].isdigit():
                if word not in _HANDLED:
                    return super().run(prog, args)
                flags.add(word)
            else:
                positional.append(word)
            i += 1
        if not 1 <= len(positional) <= 2 or {"-h", "-H"} <= flags:
            return super().run(prog, args)
        offset_text = options.get("-o", [positional[0]] if len(positional) == 2 else ["0"])[-1]
        offset = member_offset(prog, offset_text)
        start = parse_address(prog, positional[-1])
        end = parse_address(prog, options["-e"][-1]) if "-e" in options else None
        hexadecimal = "-x" in flags
        try:
            entries, error = walk(prog, start, offset, end, flags)
        except drgn.FaultError as exc:
            raise CommandError(fault_message(exc)) from None
        lines: list[str] = []
        for entry in entries:
            lines.append(f"{entry:x}\n")
            for spec in options.get("-s", []):
                try:
                    lines.append(aggregate_text(prog, "struct", spec, entry, hexadecimal))
                except CommandError as exc:
                    return Result(
                        "".join(lines) + f"list: {exc}\n", [{"address": e} for e in entries]
                    )
        return Result("".join(lines) + error, [{"address": entry} for entry in entries])


def read_error(address: int, what: str) -> str:
    """crash's readmem() failure: a kernel address the dump lacks is a seek error."""
    if address >= KERNEL_SPACE_START:
        return f'seek error: kernel virtual address: {address:x}  type: "{what}"'
    return f'invalid kernel virtual address: {address:x}  type: "{what}"'


def walk(
    prog: Program, start: int, offset: int, end: int | None, flags: set[str]
) -> tuple[list[int], str]:
    """The entries' addresses, and crash's message if the walk ended on an error.

    Without ``-h``/``-H`` the pointer at ``offset`` is the next structure's address;
    with them it is the next ``list_head`` (``-r``: its ``prev``), ``offset`` into its
    structure.  The walk ends at NULL, ``end``, the start, a self loop, or back at
    the first entry, as crash's do_list() ends it."""
    heads = "-h" in flags or "-H" in flags
    list_end: int | None
    link = 8 if heads and "-r" in flags else 0
    if "-H" in flags:
        next_ = prog.read_u64(start + link)
        if next_ == start:
            return [], ""
        list_start, list_end, entry_offset = next_, start, offset
    elif "-h" in flags:
        list_start, list_end, entry_offset = start + offset, end, offset
    else:
        list_start, list_end, entry_offset = start, end, 0
    member = link if heads else offset
    next_ = list_start
    try:
        first = prog.read_u64(next_ + member)
    except drgn.FaultError as exc:
        return [], f"list: {read_error(exc.address, 'first list entry')}\n"
    entries: list[int] = []
    seen: set[int] = set()
    while len(entries) < MAX_ENTRIES:
        entry = next_ - entry_offset
        entries.append(entry)
        if entry in seen:
            entries.pop()
            return entries, f"\nlist: duplicate list entry: {next_:x}\n"
        seen.add(entry)
        last = next_
        try:
            next_ = prog.read_u64(next_ + member)
        except drgn.FaultError as exc:
            return entries, f"list: {read_error(exc.address, 'list entry')}\n"
        if next_ == 0:
            return entries, "\nlist: invalid list entry: 0\n" if heads else ""
        if next_ in (list_end, list_start, last) or (next_ == first and len(entries) != 1):
            break
    return entries, ""
