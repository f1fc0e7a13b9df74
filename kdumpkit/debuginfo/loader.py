"""Load debug information from the dump itself into a drgn Program.

:func:`load_dump_debuginfo` finds kallsyms through VMCOREINFO, the vmlinux BTF
between ``__start_BTF`` and ``__stop_BTF``, and registers a type finder, an object
finder and symbol finders (vmlinux first, modules after) ahead of drgn's own, so
that drgn's helpers work without a vmlinux.  The returned :class:`DebugInfo` is
kept in ``prog.cache["kdumpkit.debuginfo"]``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import drgn

from kdumpkit.debuginfo.btf import Btf, BtfError, check_blob_header
from kdumpkit.debuginfo.btf_types import BtfTypes
from kdumpkit.debuginfo.globals import KernelObjects
from kdumpkit.debuginfo.modules import ModuleBtf, ModuleSymbols, load_module_btfs
from kdumpkit.debuginfo.symbols import (
    KernelSymbols,
    SymbolError,
    load_proc_kallsyms,
    load_vmcoreinfo_kallsyms,
)
from kdumpkit.dump.vmcoreinfo import VmcoreInfo

FINDER_NAME = "kdumpkit"


@dataclass
class DebugInfo:
    """What kdumpkit knows about the dumped kernel's types and symbols."""

    symbols: KernelSymbols | None
    #: None when types come from a vmlinux's DWARF instead.
    btf: Btf | None
    types: BtfTypes | None
    objects: KernelObjects | None
    module_symbols: ModuleSymbols
    module_btfs: list[ModuleBtf] | None = None
    #: Seconds spent in each loading step, for ``--timing`` style reports.
    timings: dict[str, float] = field(default_factory=dict)

    def load_modules(self, prog: drgn.Program) -> list[ModuleBtf]:
        """Load every module's split BTF (once)."""
        if self.module_btfs is None:
            if self.types is None:
                return []
            self.module_btfs = []  # set first: walking the module list needs vmlinux types only
            self.module_btfs = load_module_btfs(prog, self.types)
        return self.module_btfs


#: The start of a vmlinux BTF blob: magic 0xeb9f, version 1, flags 0, hdr_len 24.
BTF_BLOB_START = b"\x9f\xeb\x01\x00\x18\x00\x00\x00"
#: Bytes of read-only data read per step of the search for the BTF blob.
BTF_SEARCH_CHUNK = 1 << 20


def find_vmlinux_btf(prog: drgn.Program, symbols: KernelSymbols) -> tuple[int, int] | None:
    """``(__start_BTF, __stop_BTF)`` of a kernel whose kallsyms lists only text
    (CONFIG_KALLSYMS_ALL unset, e.g. Debian 12's arm64 cloud kernel): the .BTF section
    is in the read-only data between ``_etext`` and ``_sinittext``; the first blob
    there whose header and string section hold up is it."""
    low, high = symbols.address("_etext"), symbols.address("_sinittext")
    if low is None or high is None or not 0 < high - low <= 256 << 20:
        return None
    address = low
    carry = b""
    while address < high:
        size = min(BTF_SEARCH_CHUNK, high - address)
        try:
            chunk = carry + prog.read(address, size)
        except drgn.FaultError:
            carry, address = b"", address + size
            continue
        base = address - len(carry)
        at = chunk.find(BTF_BLOB_START)
        while at >= 0:
            start = base + at
            try:
                head = prog.read(start, 32)
                length = check_blob_header(head)
                (str_off,) = struct.unpack_from("<I", head, 16)
                first_string = prog.read(start + 24 + str_off, 1)
            except (BtfError, drgn.FaultError, struct.error):
                length, first_string = 0, b"?"
            if 0 < length <= 256 << 20 and first_string == b"\0":
                return start, start + length
            at = chunk.find(BTF_BLOB_START, at + 1)
        carry = chunk[-(len(BTF_BLOB_START) - 1) :]
        address += size
    return None


def read_vmlinux_btf(prog: drgn.Program, symbols: KernelSymbols) -> Btf:
    """The vmlinux BTF blob from kernel memory, parsed."""
    start = symbols.address("__start_BTF")
    stop = symbols.address("__stop_BTF")
    if start is None or stop is None:
        found = find_vmlinux_btf(prog, symbols)
        if found is None:
            raise BtfError(
                "the kernel has no BTF (no __start_BTF/__stop_BTF symbols: built without "
                "CONFIG_DEBUG_INFO_BTF, as Debian 10 and RHEL 8.0/8.1 are): give its vmlinux "
                "with DWARF, --vmlinux /usr/lib/debug/boot/vmlinux-RELEASE from Debian's "
                "linux-image-RELEASE-dbg package (capture needs neither)"
            )
        start, stop = found
    if not 0 < stop - start <= 256 << 20:
        raise BtfError(f"__start_BTF..__stop_BTF spans {stop - start} bytes, not a BTF blob")
    try:
        data = prog.read(start, stop - start)
    except drgn.FaultError as exc:
        raise BtfError(f"vmlinux BTF at {start:#x} is not in the dump: {exc}") from None
    check_blob_header(data)
    return Btf(data)


def _why(exc: BaseException) -> str:
    """One line for an error met while reading a table from the dump."""
    if isinstance(exc, drgn.FaultError):
        return f"not readable at {exc.address:#x} ({exc.message})"
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def load_dump_debuginfo(
    prog: drgn.Program,
    vmcoreinfo: VmcoreInfo,
    symbols: KernelSymbols | None = None,
    btf: Btf | None = None,
) -> DebugInfo:
    """Register BTF types, kallsyms symbols and globals with ``prog``."""
    import time

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if symbols is None:
        try:
            symbols = load_vmcoreinfo_kallsyms(vmcoreinfo, prog.read)
        except (drgn.FaultError, OverflowError, ValueError) as exc:
            raise SymbolError(f"kallsyms tables (found through VMCOREINFO): {_why(exc)}") from None
    timings["kallsyms"] = time.perf_counter() - t0
    prog.register_symbol_finder(f"{FINDER_NAME}-vmlinux", symbols.finder, enable_index=0)
    module_symbols = ModuleSymbols()
    prog.register_symbol_finder(f"{FINDER_NAME}-modules", module_symbols.finder, enable_index=1)
    t1 = time.perf_counter()
    if btf is None:
        btf = read_vmlinux_btf(prog, symbols)
    timings["btf"] = time.perf_counter() - t1
    try:
        types = BtfTypes(prog, btf)
        objects = KernelObjects(prog, types, symbols)
    except (drgn.FaultError, OverflowError, ValueError, LookupError) as exc:
        raise BtfError(f"vmlinux BTF: {_why(exc)}") from None
    info = DebugInfo(symbols, btf, types, objects, module_symbols, timings=timings)

    def find_type(
        prog: drgn.Program, kinds: drgn.TypeKindSet, name: str, filename: str | None
    ) -> drgn.Type | None:
        found = types.find(kinds, name)
        if found is None and info.module_btfs is None:
            info.load_modules(prog)
            found = types.find(kinds, name)
        return found

    prog.register_type_finder(FINDER_NAME, find_type, enable_index=0)
    prog.register_object_finder(FINDER_NAME, objects.object_finder, enable_index=0)
    prog.cache["kdumpkit.debuginfo"] = info
    return info


def load_dwarf_companions(prog: drgn.Program, vmcoreinfo: VmcoreInfo) -> DebugInfo:
    """With a vmlinux's DWARF loaded: kallsyms for kdumpkit's own users, and modules'
    symbols from kallsyms after drgn's finders (their debug files are usually absent)."""
    try:
        symbols: KernelSymbols | None = load_vmcoreinfo_kallsyms(vmcoreinfo, prog.read)
    except (SymbolError, drgn.FaultError):
        symbols = None
    module_symbols = ModuleSymbols()
    prog.register_symbol_finder(f"{FINDER_NAME}-modules", module_symbols.finder, enable_index=-1)
    info = DebugInfo(symbols, None, None, None, module_symbols)
    prog.cache["kdumpkit.debuginfo"] = info
    return info


def load_live_debuginfo(prog: drgn.Program) -> DebugInfo:
    """The running kernel: BTF from /sys/kernel/btf/vmlinux, symbols from /proc/kallsyms."""
    path = "/sys/kernel/btf/vmlinux"
    try:
        with open(path, "rb") as file:
            btf = Btf(file.read())
    except OSError as exc:
        raise BtfError(f"{path}: cannot read: {exc.strerror}") from None
    symbols = load_proc_kallsyms()
    return load_dump_debuginfo(prog, VmcoreInfo.parse(b""), symbols=symbols, btf=btf)
