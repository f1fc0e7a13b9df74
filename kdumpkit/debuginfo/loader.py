"""Load debug information from the dump itself into a drgn Program.

:func:`load_dump_debuginfo` finds kallsyms through VMCOREINFO, the vmlinux BTF
between ``__start_BTF`` and ``__stop_BTF``, and registers a type finder, an object
finder and symbol finders (vmlinux first, modules after) ahead of drgn's own, so
that drgn's helpers work without a vmlinux.  The returned :class:`DebugInfo` is
kept in ``prog.cache["kdumpkit.debuginfo"]``.
"""

from __future__ import annotations

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


def read_vmlinux_btf(prog: drgn.Program, symbols: KernelSymbols) -> Btf:
    """The vmlinux BTF blob from kernel memory, parsed."""
    start = symbols.address("__start_BTF")
    stop = symbols.address("__stop_BTF")
    if start is None or stop is None:
        raise BtfError(
            "the kernel has no BTF (no __start_BTF/__stop_BTF symbols: built without "
            "CONFIG_DEBUG_INFO_BTF, as Debian 10 and RHEL 8.0/8.1 are): give its vmlinux "
            "with DWARF, --vmlinux /usr/lib/debug/boot/vmlinux-RELEASE from Debian's "
            "linux-image-RELEASE-dbg package (capture needs neither)"
        )
    if not 0 < stop - start <= 256 << 20:
        raise BtfError(f"__start_BTF..__stop_BTF spans {stop - start} bytes, not a BTF blob")
    try:
        data = prog.read(start, stop - start)
    except drgn.FaultError as exc:
        raise BtfError(f"vmlinux BTF at {start:#x} is not in the dump: {exc}") from None
    check_blob_header(data)
    return Btf(data)


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
        symbols = load_vmcoreinfo_kallsyms(vmcoreinfo, prog.read)
    timings["kallsyms"] = time.perf_counter() - t0
    prog.register_symbol_finder(f"{FINDER_NAME}-vmlinux", symbols.finder, enable_index=0)
    module_symbols = ModuleSymbols()
    prog.register_symbol_finder(f"{FINDER_NAME}-modules", module_symbols.finder, enable_index=1)
    t1 = time.perf_counter()
    if btf is None:
        btf = read_vmlinux_btf(prog, symbols)
    timings["btf"] = time.perf_counter() - t1
    types = BtfTypes(prog, btf)
    objects = KernelObjects(prog, types, symbols)
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
