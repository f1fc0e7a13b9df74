"""Loaded modules' types and symbols, read from each ``struct module`` in the dump.

A module's BTF is split BTF on top of vmlinux's, kept in ``module.btf_data``
(CONFIG_DEBUG_INFO_BTF_MODULES); its symbols are its own kallsyms
(``module.core_kallsyms``), decoded by drgn's ``load_module_kallsyms`` once types
for ``struct module`` exist.  Both are loaded on first need, not at open.
"""

from __future__ import annotations

from dataclasses import dataclass

import drgn

from kdumpkit.debuginfo.btf import Btf, BtfError
from kdumpkit.debuginfo.btf_types import BtfTypes

#: No module's BTF comes near this.
MAX_MODULE_BTF = 64 << 20


@dataclass
class ModuleBtf:
    """One module's split BTF."""

    name: str
    address: int
    btf: Btf


def module_name(module: drgn.Object) -> str:
    """The module's name (``struct module.name``)."""
    return module.name.string_().decode("utf-8", "replace")


def read_module_btf(prog: drgn.Program, module: drgn.Object, vmlinux: Btf) -> ModuleBtf | None:
    """Parse a module's BTF as split BTF over ``vmlinux``; None if it has none."""
    try:
        data_ptr = module.btf_data.value_()
        size = module.btf_data_size.value_()
    except AttributeError:
        return None  # built without CONFIG_DEBUG_INFO_BTF_MODULES
    if not data_ptr or not size:
        return None
    name = module_name(module)
    if size > MAX_MODULE_BTF:
        raise BtfError(f"module {name} BTF: {size} bytes is implausible")
    try:
        data = prog.read(data_ptr, size)
    except drgn.FaultError as exc:
        raise BtfError(
            f"module {name} BTF: cannot read {size} bytes at {data_ptr:#x}: {exc}"
        ) from None
    return ModuleBtf(name, data_ptr, Btf(data, base=vmlinux, name=name))


def load_module_btfs(prog: drgn.Program, types: BtfTypes) -> list[ModuleBtf]:
    """Read every loaded module's BTF and make it searchable by ``types``.

    A module whose BTF is unreadable (pages excluded from the dump) or corrupt is
    skipped: the others still load.
    """
    from drgn.helpers.linux.module import for_each_module

    loaded: list[ModuleBtf] = []
    for module in for_each_module(prog):
        try:
            found = read_module_btf(prog, module, types.vmlinux)
        except (BtfError, drgn.FaultError):
            continue
        if found is not None:
            types.add_module(found.btf)
            loaded.append(found)
    return loaded


class ModuleSymbols:
    """A symbol finder over modules' kallsyms, built on first lookup."""

    def __init__(self) -> None:
        self._index: drgn.SymbolIndex | None = None
        self._loading = False
        self.error: str | None = None

    def finder(
        self, prog: drgn.Program, name: str | None, address: int | None, one: bool
    ) -> list[drgn.Symbol]:
        """drgn symbol-finder callback."""
        if self._index is None:
            if self._loading:
                return []  # loading reads module memory, which may look up symbols
            self._loading = True
            try:
                from drgn.helpers.linux.kallsyms import load_module_kallsyms

                self._index = load_module_kallsyms(prog)
            except (LookupError, drgn.FaultError, ValueError, TypeError) as exc:
                self.error = f"module symbols unavailable: {exc}"
                self._index = drgn.SymbolIndex([])
            finally:
                self._loading = False
        return self._index(prog, name, address, one)
