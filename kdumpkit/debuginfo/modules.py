"""Loaded modules' types and symbols, read from each ``struct module`` in the dump.

A module's BTF is split BTF on top of vmlinux's, kept in ``module.btf_data``
(CONFIG_DEBUG_INFO_BTF_MODULES); its symbols are its own kallsyms
(``module.kallsyms``: an ELF symtab, string table and nm letters), read in bulk
once types for ``struct module`` exist.  Both are loaded on first need, not at open.
"""

from __future__ import annotations

from dataclasses import dataclass

import drgn
import numpy as np

from kdumpkit.debuginfo.btf import Btf, BtfError
from kdumpkit.debuginfo.btf_types import BtfTypes
from kdumpkit.debuginfo.symbols import KernelSymbols

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


def read_btf_modules(prog: drgn.Program, vmlinux: Btf) -> list[ModuleBtf]:
    """Modules' BTF as the BPF subsystem keeps it: ``btf_modules``, a list of
    ``struct btf_module`` (kernel/bpf/btf.c), each holding the parsed ``struct btf``.

    ``module.btf_data`` is cleared once a module's init has run (do_init_module), so
    after boot this list is the only copy.
    """
    from drgn.helpers.linux.list import list_for_each_entry

    found: list[ModuleBtf] = []
    try:
        head = prog["btf_modules"].address_of_()
        entries = list(list_for_each_entry("struct btf_module", head, "list"))
    except (LookupError, drgn.FaultError):
        return found
    for entry in entries:
        try:
            btf = entry.btf
            data, size = btf.data.value_(), btf.data_size.value_()
            name = module_name(entry.module) if entry.module else btf.name.string_().decode()
            if not data or not 0 < size <= MAX_MODULE_BTF:
                continue
            blob = prog.read(data, size)
            found.append(ModuleBtf(name, data, Btf(blob, base=vmlinux, name=name)))
        except (BtfError, drgn.FaultError, LookupError):
            continue  # one unreadable module does not hide the others
    return found


def load_module_btfs(prog: drgn.Program, types: BtfTypes) -> list[ModuleBtf]:
    """Read every loaded module's BTF and make it searchable by ``types``.

    A module whose BTF is unreadable (pages excluded from the dump) or corrupt is
    skipped: the others still load.
    """
    from drgn.helpers.linux.module import for_each_module

    loaded = read_btf_modules(prog, types.vmlinux)
    seen = {m.name for m in loaded}
    try:
        modules = list(for_each_module(prog))
    except (LookupError, drgn.FaultError):
        modules = []
    for module in modules:
        try:
            if module_name(module) in seen:
                continue
            found = read_module_btf(prog, module, types.vmlinux)
        except (BtfError, drgn.FaultError):
            continue
        if found is not None:
            loaded.append(found)
    for module_btf in loaded:
        types.add_module(module_btf.btf)
    return loaded


#: Elf64_Sym as modules keep their symbol table in memory.
ELF64_SYM = np.dtype(
    [("st_name", "<u4"), ("st_info", "u1"), ("st_other", "u1"), ("st_shndx", "<u2"),
     ("st_value", "<u8"), ("st_size", "<u8")]
)  # fmt: skip
MAX_MODULE_SYMBOLS = 1 << 20
_ST_LETTER = {(0, 2): "t", (1, 2): "T", (2, 2): "W", (0, 1): "d", (1, 1): "D", (2, 1): "V"}


def read_module_kallsyms(prog: drgn.Program, module: drgn.Object) -> KernelSymbols:
    """One module's symbols from its in-memory ELF symtab (``mod_kallsyms``), in 3 reads."""
    kallsyms = module.kallsyms.read_()
    if not kallsyms:
        kallsyms = module.core_kallsyms.address_of_()
    count = kallsyms.num_symtab.value_()
    if not 0 <= count <= MAX_MODULE_SYMBOLS:
        raise drgn.FaultError(f"module has {count} symbols", kallsyms.value_())
    symtab = np.frombuffer(prog.read(kallsyms.symtab.value_(), count * 24), dtype=ELF64_SYM)
    keep = (symtab["st_shndx"] != 0) & (symtab["st_name"] != 0)
    symtab = symtab[keep]
    name_end = int(symtab["st_name"].max()) + 512 if len(symtab) else 1
    strtab = _read_prefix(prog, kallsyms.strtab.value_(), name_end)
    try:
        # Linux 5.2 "kallsyms: store type information in its own array".
        typetab = prog.read(kallsyms.typetab.value_(), count)
        stored = np.frombuffer(typetab, dtype=np.uint8)[keep].tobytes()
    except AttributeError:
        stored = b"?" * len(symtab)
    # Binding and kind from the ELF st_info (as drgn does); the nm letter where st_info
    # says neither function nor object.
    letters = bytes(
        ord(_ST_LETTER.get((info >> 4, info & 0xF), chr(stored[i])))
        for i, info in enumerate(symtab["st_info"].tolist())
    )
    names = []
    for offset in symtab["st_name"].tolist():
        end = strtab.find(b"\0", offset)
        names.append(strtab[offset : end if end >= 0 else len(strtab)].decode("latin-1"))
    return KernelSymbols(
        names, symtab["st_value"].copy(), letters, "module", symtab["st_size"].copy()
    )


def _read_prefix(prog: drgn.Program, address: int, size: int) -> bytes:
    """Up to ``size`` bytes at ``address``, stopping at the first unreadable page."""
    try:
        return prog.read(address, size)
    except drgn.FaultError:
        page_end = (address | 0xFFF) + 1
        return prog.read(address, min(size, page_end - address))


def load_all_module_kallsyms(prog: drgn.Program) -> KernelSymbols:
    """Every loaded module's symbols in one table (unreadable modules are skipped)."""
    from drgn.helpers.linux.module import for_each_module

    names: list[str] = []
    addresses: list[np.ndarray] = []
    letters = bytearray()
    sizes: list[np.ndarray] = []
    for module in for_each_module(prog):
        try:
            table = read_module_kallsyms(prog, module)
        except (drgn.FaultError, LookupError, ValueError):
            continue
        names += table.names
        addresses.append(table.addresses)
        letters += table.types
        assert table.explicit_sizes is not None
        sizes.append(table.explicit_sizes)
    if not names:
        empty = np.zeros(0, dtype=np.uint64)
        return KernelSymbols([], empty, b"", "modules", empty)
    return KernelSymbols(
        names, np.concatenate(addresses), bytes(letters), "modules", np.concatenate(sizes)
    )


class ModuleSymbols:
    """A symbol finder over modules' kallsyms, built on first lookup."""

    def __init__(self) -> None:
        self.table: KernelSymbols | None = None
        self._loading = False
        self.error: str | None = None

    def finder(
        self, prog: drgn.Program, name: str | None, address: int | None, one: bool
    ) -> list[drgn.Symbol]:
        """drgn symbol-finder callback."""
        if self.table is None:
            if self._loading:
                return []  # loading reads module memory, which may look up symbols
            self._loading = True
            try:
                self.table = load_all_module_kallsyms(prog)
            except (LookupError, drgn.FaultError, ValueError, TypeError) as exc:
                self.error = f"module symbols unavailable: {exc}"
                empty = np.zeros(0, dtype=np.uint64)
                self.table = KernelSymbols([], empty, b"", "modules", empty)
            finally:
                self._loading = False
        return self.table.finder(prog, name, address, one)
