"""``rd``: read memory and show it as crash does (hex words with ASCII, symbols, strings)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import drgn

from kdumpkit.analyze.commands.base import Command, CommandError, Result, register
from kdumpkit.analyze.commands.common import fault_message, parse_address, parse_count
from kdumpkit.analyze.facts.memory import slab_cache_name
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


#: crash's cell formats by value size: hexadecimal, signed and unsigned decimal
#: (memory.c display_memory())
_CELL_FORMATS = {
    8: ("016x", "15d", "20d"),
    4: ("08x", "12d", "12d"),
    2: ("04x", "5d", "5d"),
    1: ("02x", "3d", "3d"),
}
#: where the ASCII column starts (ASCII_START_*), by value size
_ASCII_START = {8: 53, 4: 55, 2: 59, 1: 67}


def hex_lines(
    address: int,
    data: bytes,
    width: int,
    *,
    ascii_column: bool,
    decimal: str | None = None,
    symbolic: drgn.Program | None = None,
    slab: int = 0,
) -> list[str]:
    """crash's ``rd`` rows (memory.c display_memory()): ``addr:  cell cell ...`` with
    every cell followed by a space, and the ASCII column (``ascii_column``) after full
    rows and, padded to its column, after the last one.  ``symbolic`` names kernel
    addresses (``rd -s``); with ``slab`` 1 or 2 slab objects too (``-S``, ``-SS``)."""
    per_line = LINE_BYTES // width
    hex_format, signed_format, unsigned_format = _CELL_FORMATS[width]
    lines = []
    for start in range(0, len(data), LINE_BYTES):
        chunk = data[start : start + LINE_BYTES]
        cells = []
        for i in range(0, len(chunk) - width + 1, width):
            word = int.from_bytes(chunk[i : i + width], "little", signed=decimal == "signed")
            cells.append(_cell(word, width, hex_format, signed_format, unsigned_format,
                               decimal, symbolic, slab))  # fmt: skip
        line = f"{address + start:>16x}:  " + "".join(cells)
        if ascii_column:
            if len(cells) < per_line:
                line = line.ljust(_ASCII_START[width])
            line += "  " + printable(chunk)
        lines.append(line)
    return lines


def _cell(
    word: int,
    width: int,
    hex_format: str,
    signed_format: str,
    unsigned_format: str,
    decimal: str | None,
    symbolic: drgn.Program | None,
    slab: int,
) -> str:
    if symbolic is not None and width == 8 and word >= KERNEL_SPACE_START:
        # only kernel addresses name symbols (per-cpu offsets are small numbers)
        name = symbolize(symbolic, word)
        if name is None and slab:
            cache = slab_cache_name(symbolic, word)
            if cache is not None:
                name = f"[{word:x}:{cache}]" if slab > 1 else f"[{cache}]"
        if name is not None:
            return f"{name:<16} "
    if decimal == "signed":
        return f"{word:{signed_format}} "
    if decimal == "unsigned":
        return f"{word:{unsigned_format}} "
    return f"{word:{hex_format}} "


def ascii_text(address: int, data: bytes, unlimited: bool) -> str:
    """``rd -a``: printable characters, :data:`ASCII_LINE` a line.  Without a count
    crash stops at the first unprintable character, without ending the line; with one
    it goes on, each run of printables on a new line, and ends the last."""
    text = ""
    column = 0
    for offset, byte in enumerate(data):
        if 0x20 <= byte < 0x7F:
            if column % ASCII_LINE == 0:
                text += ("\n" if text else "") + f"{address + offset:>16x}:  "
            text += chr(byte)
            column += 1
        elif unlimited:
            return text
        else:
            column = 0
    return text if unlimited or not text else text + "\n"


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
            "-S",
            dest="slab",
            action="count",
            default=0,
            help="like -s, and slab objects as [cache] (-SS: [address:cache])",
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
                if args.count:
                    data = prog.read(address, count, args.physical)
                else:
                    data = read_string(prog, address, args.physical, ASCII_LIMIT)
                return Result(
                    ascii_text(address, data, unlimited=not args.count),
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
        symbolic = prog if args.symbolic or args.slab else None
        lines = hex_lines(
            address,
            data,
            width,
            ascii_column=not (args.no_ascii or decimal or symbolic),
            decimal=decimal,
            symbolic=symbolic,
            slab=args.slab,
        )
        rows = [
            {"address": address + i, "value": int.from_bytes(data[i : i + width], "little")}
            for i in range(0, len(data), width)
        ]
        return Result("".join(line + "\n" for line in lines), rows)
