"""Kernel symbols as crash names addresses, and globals read without types."""

from __future__ import annotations

from typing import TYPE_CHECKING

import drgn

from kdumpkit.analyze.facts.modules import module_ranges

if TYPE_CHECKING:
    from drgn import Program


def read_global_int(prog: Program, name: str, size: int, signed: bool = False) -> int:
    """An integer global read through its kallsyms address (no type needed)."""
    address = prog.symbol(name).address
    data = prog.read(address, size)
    return int.from_bytes(data, "little", signed=signed)


def symbol_type_letter(symbol: drgn.Symbol) -> str:
    """nm's letter for a symbol, as far as kallsyms' binding and kind tell it."""
    if symbol.kind == drgn.SymbolKind.FUNC:
        letter = "t"
    elif symbol.kind == drgn.SymbolKind.OBJECT:
        letter = "d"
    else:
        letter = "?"
    if symbol.binding == drgn.SymbolBinding.WEAK:
        return "W" if symbol.kind == drgn.SymbolKind.FUNC else "V"
    if symbol.binding == drgn.SymbolBinding.GLOBAL:
        return letter.upper()
    return letter


def symbol_module(prog: Program, address: int) -> str | None:
    """The name of the module holding ``address``, or None for the core kernel."""
    try:
        module = prog.module(address)
    except LookupError:
        module = None
    if module is not None:
        return None if isinstance(module, drgn.MainModule) else module.name
    # Without debug files drgn knows no modules: the kernel's module list does.
    for start, end, name in module_ranges(prog):
        if start <= address < end:
            return name
    return None


def symbolize(prog: Program, address: int) -> str | None:
    """``name`` or ``name+off`` (decimal) for an address inside a symbol, else None."""
    try:
        symbol = prog.symbol(address)
    except LookupError:
        return None
    offset = address - symbol.address
    return f"{symbol.name}+{offset}" if offset else symbol.name
