"""``sym``: symbol to address and back, from kallsyms (no vmlinux needed)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from kdumpkit.analyze.commands.base import Command, CommandError, Result, register
from kdumpkit.analyze.context import program_debuginfo
from kdumpkit.analyze.facts.symbols import symbol_module, symbol_type_letter

if TYPE_CHECKING:
    import drgn
    from drgn import Program


def symbol_tables(prog: Program) -> list[Any]:
    """kdumpkit's kallsyms tables (vmlinux, then modules) with their nm letters, if any."""
    info = program_debuginfo(prog)
    if info is None:
        return []
    tables: list[Any] = [info.symbols] if info.symbols is not None else []
    module_symbols = info.module_symbols
    if module_symbols is not None:
        if module_symbols.table is None:
            module_symbols.finder(prog, "", None, True)  # loads the modules' kallsyms once
        if module_symbols.table is not None and len(module_symbols.table):
            tables.append(module_symbols.table)
    return tables


def type_letter(prog: Program, symbol: drgn.Symbol) -> str:
    """The symbol's nm letter from kallsyms when kdumpkit read it, else from its binding."""
    for table in symbol_tables(prog):
        for position in table.positions(symbol.name):
            if int(table.addresses[position]) == symbol.address:
                return chr(table.types[position])
    return symbol_type_letter(symbol)


def symbol_line(
    prog: Program, symbol: drgn.Symbol, address: int, letter: str | None = None
) -> dict[str, object]:
    """One ``sym`` row: address, type letter, name[+offset], module."""
    offset = address - symbol.address
    name = f"{symbol.name}+{offset}" if offset else symbol.name
    return {
        "address": address,
        "type": letter or type_letter(prog, symbol),
        "name": name,
        "symbol": symbol.name,
        "offset": offset,
        "module": symbol_module(prog, symbol.address),
    }


def render_symbol_row(row: dict[str, object]) -> str:
    """``ffffffff84bccf31 (T) panic [module]`` as crash prints it."""
    text = f"{row['address']:x} ({row['type']}) {row['name']}"
    if row["module"]:
        text += f" [{row['module']}]"
    return text


@register
class Sym(Command):
    """crash's ``sym``."""

    name = "sym"
    help = "translate a symbol to its address, or an address to its symbol"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-l", dest="list_all", action="store_true", help="list all symbols")
        parser.add_argument(
            "-q", dest="search", metavar="string", help="list the symbols containing a string"
        )
        parser.add_argument(
            "-m", dest="module", metavar="module", help="list the symbols of a module"
        )
        parser.add_argument("targets", nargs="*", metavar="symbol | vaddr")

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        if args.list_all or args.search is not None or args.module:
            rows = self._listing(prog, args)
        elif not args.targets:
            raise CommandError("no symbol or address given")
        else:
            rows = [self._lookup(prog, target) for target in args.targets]
        text = "".join(render_symbol_row(row) + "\n" for row in rows)
        return Result(text, rows)

    @staticmethod
    def _lookup(prog: Program, target: str) -> dict[str, object]:
        try:
            symbol = prog.symbol(target)
            return symbol_line(prog, symbol, symbol.address)
        except LookupError:
            pass
        try:
            address = int(target.removeprefix("0x"), 16)
        except ValueError:
            raise CommandError(f"{target}: symbol not found") from None
        try:
            symbol = prog.symbol(address)
        except LookupError:
            raise CommandError(f"{target}: no text or data symbol at this address") from None
        return symbol_line(prog, symbol, address)

    @staticmethod
    def _listing(prog: Program, args: argparse.Namespace) -> list[dict[str, object]]:
        tables = symbol_tables(prog)
        if tables:
            return Sym._table_listing(prog, tables, args)
        rows = []
        for symbol in sorted(prog.symbols(), key=lambda s: (s.address, s.name)):
            if args.search is not None and args.search not in symbol.name:
                continue
            row = symbol_line(prog, symbol, symbol.address)
            if args.module and row["module"] != args.module:
                continue
            rows.append(row)
        return rows

    @staticmethod
    def _table_listing(
        prog: Program, tables: list[Any], args: argparse.Namespace
    ) -> list[dict[str, object]]:
        rows = []
        for table in tables:
            names = table.names
            wanted = (
                range(len(names))
                if args.search is None
                else [i for i, name in enumerate(names) if args.search in name]
            )
            for i in wanted:
                address = int(table.addresses[i])
                module = symbol_module(prog, address) if table.source == "modules" else None
                if args.module and module != args.module:
                    continue
                rows.append(
                    {
                        "address": address,
                        "type": chr(table.types[i]),
                        "name": names[i],
                        "symbol": names[i],
                        "offset": 0,
                        "module": module,
                    }
                )
        rows.sort(key=lambda row: row["address"])
        return rows
