"""Kernel symbols without a vmlinux: kallsyms from memory, System.map or an ELF symtab.

The kernel's own compressed symbol table is found through VMCOREINFO (Linux 6.0+),
or on older kernels by scanning the kernel image (:mod:`kdumpkit.kernel.kallsyms_scan`),
and decoded by :mod:`kdumpkit.kernel.kallsyms` through drgn's memory
(:func:`load_vmcoreinfo_kallsyms`).  Failing that, ``System.map`` or a vmlinux ELF
symtab (:func:`load_system_map`, :func:`load_elf_symtab`); Debian's placeholder
System.map is recognised (:func:`debian_stub_system_map`).

The result is a :class:`KernelSymbols` table that builds a ``drgn.SymbolIndex``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import drgn
import numpy as np

from kdumpkit.dump.base import Dump
from kdumpkit.dump.errors import DumpError
from kdumpkit.dump.vmcoreinfo import VmcoreInfo
from kdumpkit.kernel.kallsyms import (
    FoundKallsyms,
    KallsymsError,
    ReadFn,
    find_kallsyms,
    found_kallsyms,
    missing_kallsyms_symbols,
    read_kallsyms,
)
from kdumpkit.kernel.kallsyms_scan import zero_filling
from kdumpkit.kernel.x86_64_layout import KERNEL_SPACE_START, START_KERNEL_MAP


class SymbolError(DumpError):
    """The kernel's symbol table cannot be found or is corrupt."""


@dataclass
class KernelSymbols:
    """A symbol table: names, addresses and nm(1) type letters, sorted by address."""

    names: list[str]
    addresses: np.ndarray  # uint64
    types: bytes  # one nm letter per symbol
    source: str = "kallsyms"
    #: Sizes where the table records them (ELF symtabs); else the gap to the next symbol.
    explicit_sizes: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.addresses) and bool((self.addresses[1:] < self.addresses[:-1]).any()):
            order = np.argsort(self.addresses, kind="stable")
            self.addresses = self.addresses[order]
            self.names = [self.names[i] for i in order.tolist()]
            self.types = bytes(np.frombuffer(self.types, dtype=np.uint8)[order].tobytes())
            if self.explicit_sizes is not None:
                self.explicit_sizes = self.explicit_sizes[order]
        self._sizes: np.ndarray | None = self.explicit_sizes
        self._lengths: np.ndarray | None = None
        #: name length -> (the names of that length end to end, their positions)
        self._cells: dict[int, tuple[str, list[int]]] = {}

    def __len__(self) -> int:
        return len(self.names)

    def _names_of_length(self, length: int) -> tuple[str, list[int]]:
        """The names of one length end to end (fixed-width cells) and their positions,
        built the first time a name of that length is looked up (~0.5 ms each)."""
        cells = self._cells.get(length)
        if cells is None:
            names = self.names
            if self._lengths is None:
                self._lengths = np.fromiter(map(len, names), dtype=np.int64, count=len(names))
            where = np.flatnonzero(self._lengths == length).tolist()
            cells = self._cells[length] = ("".join(map(names.__getitem__, where)), where)
        return cells

    def positions(self, name: str) -> list[int]:
        """Positions of every symbol called ``name`` (ascending).

        A search among the names of the same length, no dict of every name: building
        one costs ~20 ms for 90k names, more than all the lookups of a ``bt`` together.
        """
        length = len(name)
        text, where = self._names_of_length(length)
        if length == 0:
            return list(where)
        found = []
        at = text.find(name)
        while at >= 0:
            index, misaligned = divmod(at, length)
            if misaligned:
                at = text.find(name, at + 1)
            else:
                found.append(where[index])
                at = text.find(name, at + length)
        return found

    def address(self, name: str) -> int | None:
        """Address of the first symbol called ``name``, or None."""
        found = self.positions(name)
        return int(self.addresses[found[0]]) if found else None

    def sizes(self) -> np.ndarray:
        """Each symbol's size: the distance to the next symbol at a higher address."""
        if self._sizes is None:
            addrs = self.addresses
            # Equal addresses form a run; every member of a run ends where the next run starts.
            next_run = np.searchsorted(addrs, addrs, side="right")
            has_next = next_run < len(addrs)
            ends = addrs.copy()
            ends[has_next] = addrs[next_run[has_next]]
            # Per-cpu symbols (offsets, below kernel space) must not stretch over the
            # direct map up to the kernel text: __per_cpu_end would name every pointer.
            in_kernel = addrs >= np.uint64(KERNEL_SPACE_START)
            crosses = has_next & (in_kernel != (ends >= np.uint64(KERNEL_SPACE_START)))
            ends[crosses] = addrs[crosses]
            self._sizes = ends - addrs
        return self._sizes

    def symbol(self, i: int) -> drgn.Symbol:
        """The drgn Symbol at sorted position ``i``."""
        binding, kind = _BINDING_KIND[self.types[i]]
        return drgn.Symbol(
            self.names[i], int(self.addresses[i]), int(self.sizes()[i]), binding, kind
        )

    def indices_at(self, address: int) -> list[int]:
        """Positions of the symbols whose [address, address + size) holds ``address``."""
        if not KERNEL_SPACE_START <= address < 1 << 64:
            # Below kernel space only per-cpu offsets have symbols, and an offset is not
            # an address: NULL is not fixed_percpu_data (drgn with DWARF agrees).
            return []
        addrs = self.addresses
        hi = int(np.searchsorted(addrs, np.uint64(address), side="right"))
        if hi == 0:
            return []
        run_start = int(np.searchsorted(addrs, addrs[hi - 1], side="left"))
        if self.explicit_sizes is not None:
            # Recorded sizes may leave gaps and overlap: look a little further back.
            run_start = max(0, run_start - 16)
        sizes = self.sizes()
        found = [i for i in range(run_start, hi) if address < int(addrs[i]) + int(sizes[i])]
        return found[-1:] if self.explicit_sizes is not None else found

    def finder(
        self, prog: drgn.Program, name: str | None, address: int | None, one: bool
    ) -> list[drgn.Symbol]:
        """drgn symbol-finder callback (lookup by name, by address, or all symbols)."""
        if name is not None:
            found = self.positions(name)
            if address is not None:
                found = [i for i in found if i in set(self.indices_at(address))]
        elif address is not None:
            found = self.indices_at(address)
        else:
            found = list(range(len(self.names)))
        if one and len(found) > 1:
            if name is None and address is not None:
                found = [self.crash_alias(found, address)]
            else:
                # Prefer a global symbol, as an ELF symbol table lookup would.
                found = sorted(found, key=lambda i: self.types[i] not in _GLOBAL_LETTERS)[:1]
        return [self.symbol(i) for i in found]

    def crash_alias(self, positions: list[int], address: int) -> int:
        """Which of several symbols at one address crash names ``address`` by.

        crash sorts its symbols by address, then by name (strcmp, binutils' nm order),
        and its value_search() gives an address inside a function the last symbol at or
        below it (``asm_call_sysvec_on_stack`` of asm_call_irq_on_stack /
        asm_call_on_stack / asm_call_sysvec_on_stack), an exact address the first one,
        except that it steps over ``SyS_``/``compat_SyS_`` wrappers and ``*_text_start``
        delimiters to the next.
        """
        by_name = sorted(positions, key=lambda i: self.names[i].encode("latin-1"))
        exact = [i for i in by_name if int(self.addresses[i]) == address]
        if not exact:
            return by_name[-1]
        first = exact[0]
        name = self.names[first]
        if len(exact) > 1 and (
            name.startswith(("SyS_", "compat_SyS_")) or name.endswith("_text_start")
        ):
            return exact[1]
        return first

    def symbol_index(self) -> drgn.SymbolIndex:
        """A native drgn SymbolIndex of every symbol (slower to build than :meth:`finder`)."""
        return drgn.SymbolIndex([self.symbol(i) for i in range(len(self.names))])


def _binding_kind_table() -> list[tuple[drgn.SymbolBinding, drgn.SymbolKind]]:
    """(binding, kind) for each nm(1) letter, as drgn's kallsyms helpers assign them."""
    table = []
    for code in range(256):
        letter = chr(code)
        binding = drgn.SymbolBinding.UNKNOWN
        kind = drgn.SymbolKind.UNKNOWN
        if letter == "v":
            binding, kind = drgn.SymbolBinding.WEAK, drgn.SymbolKind.OBJECT
        elif letter == "w":
            binding = drgn.SymbolBinding.WEAK
        elif letter in "tT":
            kind = drgn.SymbolKind.FUNC
        elif letter.isalpha() and letter.lower() in "srbgncd":
            kind = drgn.SymbolKind.OBJECT
        if binding == drgn.SymbolBinding.UNKNOWN and letter.isupper():
            binding = drgn.SymbolBinding.GLOBAL
        table.append((binding, kind))
    return table


_BINDING_KIND = _binding_kind_table()
_GLOBAL_LETTERS = frozenset(ord(c) for c in "ABCDGRSTUVW")


def load_vmcoreinfo_kallsyms(vmcoreinfo: VmcoreInfo, read: ReadFn) -> KernelSymbols:
    """Decode the kernel's kallsyms tables: located by VMCOREINFO (Linux 6.0+), or else
    found by scanning the kernel image and checked against VMCOREINFO's symbols.

    ``read(vaddr, size)`` reads kernel virtual memory (drgn's, for a Program).
    """
    if missing_kallsyms_symbols(vmcoreinfo):
        try:
            found = find_kallsyms(vmcoreinfo, zero_filling(read, (drgn.FaultError, DumpError)))
        except KallsymsError as exc:
            raise SymbolError(no_kallsyms_message(str(exc))) from None
        return scanned_symbols(found)
    try:
        names, types, addresses = read_kallsyms(vmcoreinfo, read)
    except KallsymsError as exc:
        raise SymbolError(str(exc)) from None
    return KernelSymbols(names, addresses, types)


def no_kallsyms_message(reason: str) -> str:
    """The one sentence said when a kernel older than 6.0 has no kallsyms to be found."""
    return (
        f"VMCOREINFO does not locate kallsyms (kernel older than 6.0) and {reason}: "
        "give a System.map or vmlinux (Debian: the linux-image-RELEASE-dbg package's)"
    )


def scanned_symbols(found: FoundKallsyms) -> KernelSymbols:
    """The symbols of kallsyms found by scanning, saying where they were found."""
    decoded = found.decoded
    source = f"kallsyms, found by scan at {found.tables.token_table:#x}"
    return KernelSymbols(decoded.names, decoded.addresses, decoded.types, source)


def dump_scanned_symbols(dump: Dump) -> KernelSymbols | None:
    """For a kernel older than 6.0 (VMCOREINFO does not locate kallsyms): the symbols of
    the kallsyms found by scanning its image, found once per dump and shared with
    :func:`kdumpkit.kernel.kallsyms.kallsyms`.  None when VMCOREINFO locates them."""
    info = dump.vmcoreinfo
    if info is None or not missing_kallsyms_symbols(info):
        return None
    try:
        return scanned_symbols(found_kallsyms(dump))
    except KallsymsError as exc:
        raise SymbolError(no_kallsyms_message(str(exc))) from None


#: Debian's /boot/System.map-RELEASE is one line (83 bytes):
#: "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package".
DEBIAN_STUB_SYSTEM_MAP = b"The real System.map is in the linux-image-"
STUB_MAX_BYTES = 512


def debian_stub_system_map(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is Debian's placeholder System.map, which names no symbol."""
    try:
        with open(path, "rb") as file:
            head = file.read(STUB_MAX_BYTES + 1)
    except OSError:
        return False
    return len(head) <= STUB_MAX_BYTES and DEBIAN_STUB_SYSTEM_MAP in head


def _relocate(addresses: np.ndarray, kaslr_offset: int) -> np.ndarray:
    # Link-time addresses at or above __START_KERNEL_map move with KASLR; per-cpu
    # symbols (offsets into the per-cpu area, near 0) do not.
    moved = addresses >= np.uint64(START_KERNEL_MAP)
    out = addresses.copy()
    out[moved] += np.uint64(kaslr_offset & ((1 << 64) - 1))
    return out


def _read_nm_listing(path: str | os.PathLike[str]) -> KernelSymbols:
    """Symbols from ``address type name`` lines (nm(1) output: System.map, /proc/kallsyms).

    Lines with a fourth field (``[module]`` in /proc/kallsyms) are modules' symbols,
    which :mod:`kdumpkit.debuginfo.modules` reads from the kernel; they are skipped.
    """
    name = os.fspath(path)
    if debian_stub_system_map(path):
        raise SymbolError(
            f"{name} is Debian's placeholder System.map, not a symbol table: the real one "
            "is in the linux-image-RELEASE-dbg package (leave it out: kallsyms is then "
            "read from the dump)"
        )
    names: list[str] = []
    addresses: list[int] = []
    types = bytearray()
    try:
        with open(path, encoding="latin-1") as file:
            for line_no, line in enumerate(file, 1):
                fields = line.split()
                if len(fields) != 3:
                    continue
                try:
                    value = int(fields[0], 16)
                except ValueError:
                    raise SymbolError(
                        f"{name}:{line_no}: not an 'address type name' line"
                    ) from None
                if value >= 1 << 64:
                    raise SymbolError(f"{name}:{line_no}: address out of range")
                names.append(fields[2])
                addresses.append(value)
                types.append(ord(fields[1][:1]))
    except OSError as exc:
        raise SymbolError(f"{name}: cannot read: {exc.strerror}") from None
    if not names:
        raise SymbolError(f"{name}: no symbols")
    return KernelSymbols(names, np.array(addresses, dtype=np.uint64), bytes(types), name)


def load_system_map(path: str | os.PathLike[str], kaslr_offset: int = 0) -> KernelSymbols:
    """Symbols from a System.map (``address type name`` lines), shifted by KASLR."""
    listing = _read_nm_listing(path)
    relocated = _relocate(listing.addresses, kaslr_offset)
    return KernelSymbols(listing.names, relocated, listing.types, "System.map")


def load_proc_kallsyms(path: str | os.PathLike[str] = "/proc/kallsyms") -> KernelSymbols:
    """The running kernel's symbols (vmlinux only) from /proc/kallsyms."""
    listing = _read_nm_listing(path)
    if not listing.addresses.any():
        raise SymbolError(f"{os.fspath(path)} shows zero addresses: run as root")
    listing.source = "/proc/kallsyms"
    return listing


_ELF64_SYM = np.dtype(
    [("st_name", "<u4"), ("st_info", "u1"), ("st_other", "u1"), ("st_shndx", "<u2"),
     ("st_value", "<u8"), ("st_size", "<u8")]
)  # fmt: skip
#: nm letters by (ELF binding, ELF type): local/global/weak x object/function.
_NM_LETTER = {(0, 1): "d", (1, 1): "D", (2, 1): "V", (0, 2): "t", (1, 2): "T", (2, 2): "W"}
SHN_UNDEF = 0
SHN_ABS = 0xFFF1


def load_elf_symtab(path: str | os.PathLike[str], kaslr_offset: int = 0) -> KernelSymbols:
    """Symbols from a vmlinux's ELF ``.symtab`` (read in bulk), shifted by KASLR."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    name = os.fspath(path)
    try:
        with open(path, "rb") as file:
            elf = ELFFile(file)
            symtab = elf.get_section_by_name(".symtab")
            if symtab is None:
                raise SymbolError(f"{name}: no .symtab section")
            strtab = elf.get_section(symtab["sh_link"])
            file.seek(symtab["sh_offset"])
            raw = file.read(symtab["sh_size"])
            file.seek(strtab["sh_offset"])
            strings = file.read(strtab["sh_size"])
    except OSError as exc:
        raise SymbolError(f"{name}: cannot read: {exc.strerror}") from None
    except (ELFError, KeyError, IndexError) as exc:
        raise SymbolError(f"{name}: bad ELF file: {exc}") from None
    if len(raw) % _ELF64_SYM.itemsize:
        raise SymbolError(f"{name}: .symtab is not a whole number of 64-bit symbols")
    syms = np.frombuffer(raw, dtype=_ELF64_SYM)
    syms = syms[(syms["st_shndx"] != SHN_UNDEF) & (syms["st_name"] != 0)]
    names = []
    for offset in syms["st_name"].tolist():
        end = strings.find(b"\0", offset)
        names.append(strings[offset : end if end >= 0 else len(strings)].decode("latin-1"))
    letters = bytes(
        ord(_NM_LETTER.get((info >> 4, info & 0xF), "a")) for info in syms["st_info"].tolist()
    )
    addresses = syms["st_value"].copy()
    absolute = syms["st_shndx"] == SHN_ABS
    relocated = _relocate(addresses, kaslr_offset)
    relocated[absolute] = addresses[absolute]
    return KernelSymbols(names, relocated, letters, "vmlinux", syms["st_size"].copy())
