"""``rd``: read memory and show it as crash does (hex words with ASCII, symbols, strings)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import drgn

from kdumpkit.analyze.commands.base import Command, CommandError, Result, register
from kdumpkit.analyze.commands.common import fault_message, parse_address, parse_count
from kdumpkit.analyze.facts.symbols import symbolize
from kdumpkit.kernel.x86_64_layout import KERNEL_SPACE_START

if TYPE_CHECKING:
    from drgn import Program

#: bytes per line in crash's hex display
LINE_BYTES = 16
#: characters per line of ``rd -a``
ASCII_LINE = 60
#: longest ``rd -a`` string, so that a missing NUL cannot read unbounded memory
ASCII_LIMIT = 1 << 20


def printable(data: bytes) -> str:
    """Bytes as ASCII with non-printables shown as dots."""
    return "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in data)


def hex_lines(
    address: int,
    data: bytes,
    width: int,
    *,
    ascii_column: bool,
    decimal: str | None = None,
    symbolic: drgn.Program | None = None,
) -> list[str]:
    """crash's ``rd`` rows: ``addr:  words...   ascii``."""
    per_line = LINE_BYTES // width
    digits = width * 2
    lines = []
    for start in range(0, len(data), LINE_BYTES):
        chunk = data[start : start + LINE_BYTES]
        words = [
            int.from_bytes(chunk[i : i + width], "little", signed=decimal == "signed")
            for i in range(0, len(chunk) - width + 1, width)
        ]
        cells = []
        for word in words:
            if symbolic is not None and width == 8:
                # only kernel addresses name symbols (per-cpu offsets are small numbers)
                name = symbolize(symbolic, word) if word >= KERNEL_SPACE_START else None
                cells.append(f"{name or format(word, '016x'):<16}")
            elif decimal:
                cells.append(f"{word:>{digits + 4}}")
            else:
                cells.append(f"{word:0{digits}x}")
        cells += [" " * len(cells[0])] * (per_line - len(words)) if cells else []
        line = f"{address + start:x}:  " + " ".join(cells)
        if ascii_column:
            line += "   " + printable(chunk)
        lines.append(line.rstrip() if not ascii_column else line)
    return lines


def read_string(prog: Program, address: int, physical: bool, limit: int) -> bytes:
    """A NUL-terminated string read page by page, at most ``limit`` bytes."""
    out = bytearray()
    while len(out) < limit:
        chunk_len = min(4096 - (address + len(out)) % 4096, limit - len(out))
        chunk = prog.read(address + len(out), chunk_len, physical)
        nul = chunk.find(b"\0")
        if nul >= 0:
            out += chunk[:nul]
            break
        out += chunk
    return bytes(out)


@register
class Rd(Command):
    """crash's ``rd``."""

    name = "rd"
    help = "read memory"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        for bits in (8, 16, 32, 64):
            parser.add_argument(
                f"-{bits}",
                dest="width",
                action="store_const",
                const=bits // 8,
                help=f"display {bits}-bit values",
            )
        parser.add_argument("-p", dest="physical", action="store_true", help="physical address")
        parser.add_argument("-a", dest="ascii", action="store_true", help="display ASCII string")
        parser.add_argument(
            "-s",
            dest="symbolic",
            action="store_true",
            help="display symbols for values that are addresses",
        )
        parser.add_argument(
            "-x", dest="no_ascii", action="store_true", help="do not display the ASCII column"
        )
        parser.add_argument("-d", dest="signed", action="store_true", help="signed decimal")
        parser.add_argument("-D", dest="unsigned", action="store_true", help="unsigned decimal")
        parser.add_argument("address", metavar="address | symbol")
        parser.add_argument("count", nargs="?", help="number of values (default 1)")

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        address = parse_address(prog, args.address)
        width = args.width or 8
        count = parse_count(args.count) if args.count else 1
        try:
            if args.ascii:
                limit = count if args.count else ASCII_LIMIT
                data = read_string(prog, address, args.physical, limit)
                lines = [
                    f"{address + i:x}:  {printable(data[i : i + ASCII_LINE])}"
                    for i in range(0, max(len(data), 1), ASCII_LINE)
                ]
                return Result(
                    "".join(line + "\n" for line in lines),
                    [{"address": address, "string": data.decode("latin-1")}],
                )
            nbytes = count * width
            if nbytes > 64 << 20:
                raise CommandError(f"count {count} is too large")
            data = prog.read(address, nbytes, args.physical)
        except drgn.FaultError as exc:
            kind = "PHYSADDR" if args.physical else "KVADDR"
            raise CommandError(fault_message(exc, kind)) from None
        decimal = "signed" if args.signed else "unsigned" if args.unsigned else None
        symbolic = prog if args.symbolic else None
        lines = hex_lines(
            address,
            data,
            width,
            ascii_column=not (args.no_ascii or decimal or symbolic),
            decimal=decimal,
            symbolic=symbolic,
        )
        rows = [
            {"address": address + i, "value": int.from_bytes(data[i : i + width], "little")}
            for i in range(0, len(data), width)
        ]
        return Result("".join(line + "\n" for line in lines), rows)
