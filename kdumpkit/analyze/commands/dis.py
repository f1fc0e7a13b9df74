"""``dis``: disassemble kernel text with capstone (AT&T syntax, as crash/gdb show it)."""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from kdumpkit.analyze.commands.base import Command, CommandError, Result, register
from kdumpkit.analyze.commands.common import parse_address, parse_count
from kdumpkit.analyze.facts.symbols import symbolize

if TYPE_CHECKING:
    from drgn import Program

#: the longest x86 instruction; enough bytes to decode one more instruction
MAX_INSN = 15
#: the most bytes a whole-function disassembly reads
MAX_FUNCTION = 1 << 20

_TARGET = re.compile(r"^\$?(0x[0-9a-f]+)$")
_RIP_RELATIVE = re.compile(r"(-?0x[0-9a-f]+)\(%rip\)")
_DECIMAL_IMMEDIATE = re.compile(r"\$(-?\d+)\b")
#: AT&T mnemonics whose size suffix gdb leaves out when a register gives the size
_SUFFIXED = frozenset(
    "mov push pop add sub and or xor cmp test lea inc dec call ret jmp shl shr sar imul "
    "neg not xchg adc sbb movs movz".split()
)


def gdb_style(mnemonic: str, operands: str) -> tuple[str, str]:
    """Capstone's AT&T text made closer to gdb's: hex immediates, no redundant suffix."""
    operands = _DECIMAL_IMMEDIATE.sub(
        lambda m: f"$0x{int(m.group(1)) & 0xFFFFFFFFFFFFFFFF:x}", operands.replace(", ", ",")
    )
    base = mnemonic[:-1]
    if base in _SUFFIXED and mnemonic[-1] in "bwlq":
        always = base in ("call", "ret", "push", "pop", "jmp")
        if always or re.search(r"(^|,)%", operands):
            mnemonic = base
    return mnemonic, operands


def _disassembler():  # capstone has no type hints
    try:
        import capstone
    except ImportError:
        raise CommandError("capstone is not installed (pip install capstone)") from None
    engine = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    engine.syntax = capstone.CS_OPT_SYNTAX_ATT
    return engine


def disassemble(prog: Program, start: int, size: int, count: int | None) -> list[dict]:
    """Decode instructions from ``start``: ``count`` of them, else all within ``size`` bytes."""
    code = prog.read(start, size)
    rows = []
    for insn in _disassembler().disasm(code, start):
        mnemonic, operands = gdb_style(insn.mnemonic, insn.op_str)
        target = _TARGET.match(operands)
        if target and mnemonic.startswith(("j", "call", "loop")):
            name = symbolize(prog, int(target.group(1), 16))
            if name:
                operands = f"{target.group(1)} <{name}>"
        rip = _RIP_RELATIVE.search(operands)
        if rip:
            # gdb's comment: where a %rip-relative operand points
            where = (insn.address + insn.size + int(rip.group(1), 16)) & 0xFFFFFFFFFFFFFFFF
            name = symbolize(prog, where)
            operands += f"        # 0x{where:x}" + (f" <{name}>" if name else "")
        rows.append(
            {
                "address": insn.address,
                "location": symbolize(prog, insn.address),
                "bytes": insn.bytes.hex(),
                "mnemonic": mnemonic,
                "operands": operands,
            }
        )
        if count is not None and len(rows) >= count:
            break
    return rows


def render(rows: list[dict], show_bytes: bool) -> str:
    """crash's layout: ``0xaddr <sym+off>:    mnemonic operands``, labels aligned."""
    labels = [
        f"0x{row['address']:x} <{row['location']}>:"
        if row["location"]
        else f"0x{row['address']:x}:"
        for row in rows
    ]
    width = max((len(label) for label in labels), default=0) + 1
    lines = []
    for label, row in zip(labels, rows, strict=True):
        body = f"{row['mnemonic']:<6} {row['operands']}".rstrip()
        if show_bytes:
            pairs = " ".join(row["bytes"][i : i + 2] for i in range(0, len(row["bytes"]), 2))
            body = f"{pairs:<30}{body}"
        lines.append(f"{label:<{width}}{body}\n")
    return "".join(lines)


@register
class Dis(Command):
    """crash's ``dis``, decoded by capstone."""

    name = "dis"
    help = "disassemble memory"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "-r",
            dest="reverse",
            action="store_true",
            help="from the function's start up to the address",
        )
        parser.add_argument(
            "-f", dest="forward", action="store_true", help="from the address to the function's end"
        )
        parser.add_argument(
            "-b", dest="show_bytes", action="store_true", help="show the instruction bytes"
        )
        parser.add_argument(
            "-l",
            dest="lines",
            action="store_true",
            help="source lines (not available without debug info)",
        )
        parser.add_argument("target", metavar="address | symbol")
        parser.add_argument("count", nargs="?")

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        address = parse_address(prog, args.target)
        try:
            symbol = prog.symbol(address)
        except LookupError:
            symbol = None
        if args.reverse or args.forward:
            if symbol is None:
                raise CommandError(f"{args.target}: not inside a known function")
            if args.reverse:
                if address - symbol.address > MAX_FUNCTION:
                    raise CommandError(f"{args.target}: too far from {symbol.name}")
                rows = disassemble(prog, symbol.address, address - symbol.address + MAX_INSN, None)
                rows = [row for row in rows if row["address"] <= address]
            else:
                end = symbol.address + symbol.size
                rows = disassemble(prog, address, min(max(end - address, 1), MAX_FUNCTION), None)
        elif args.count:
            count = parse_count(args.count)
            if count * MAX_INSN > MAX_FUNCTION:
                raise CommandError(f"count {count} is too large")
            rows = disassemble(prog, address, count * MAX_INSN, count)
        elif symbol is not None and symbol.address == address and symbol.size:
            rows = disassemble(prog, address, min(symbol.size, MAX_FUNCTION), None)
        else:
            rows = disassemble(prog, address, MAX_INSN, 1)
        return Result(render(rows, args.show_bytes), rows)
