"""ORC unwind tables read from the dump's memory (no vmlinux needed).

The kernel keeps its ORC tables in memory: ``__start_orc_unwind_ip`` ..
``__stop_orc_unwind_ip`` holds one ``s32`` per entry, each relative to its own
address (``ip = &table[i] + table[i]``), sorted by ip; ``__start_orc_unwind`` holds
the matching 6-byte ``struct orc_entry``: ``s16 sp_offset, s16 bp_offset, u16 flags``.
A loaded module keeps its own pair of tables in ``module->arch`` (``orc_unwind_ip``,
``orc_unwind``, ``num_orcs``).

The meaning of the ``flags`` bits changed twice (the version numbers are ours):

* version 1 (Linux 4.14 .. 6.2): ``sp_reg:4 bp_reg:4 type:2 end:1`` with types
  CALL=0, REGS=1, REGS_PARTIAL=2;
* version 2 (Linux kernel commit ffb1b4a41016 "x86/unwind/orc: Add 'signal' field to
  ORC metadata", in v6.3): ``sp_reg:4 bp_reg:4 type:2 signal:1 end:1``;
* version 3 (Linux kernel commit fb799447ae29 "x86,objtool: Split UNWIND_HINT_EMPTY in
  two", in v6.4): ``sp_reg:4 bp_reg:4 type:3 signal:1`` with types UNDEFINED=0,
  END_OF_STACK=1, CALL=2, REGS=3, REGS_PARTIAL=4.  The same release added
  ``.orc_header`` (commit b9f174c811e3), whose ``__start_orc_header`` symbol tells
  version 3 apart.

* version 4 (Linux 7.1): the version-3 layout with the registers renumbered
  (``orc_types.h``: UNDEFINED=0, AX=1, DX=2, SP=3, BP=4, DI=5, R10=6, R13=7,
  PREV_SP=8, SP_INDIRECT=9, BP_INDIRECT=10; seen in Debian's 7.3.4 headers).  Its
  ``.orc_header`` -- the SHA-1 of the ``ORC_REG``/``ORC_TYPE`` defines and ``struct
  orc_entry`` (scripts/orc_hash.sh) -- is :data:`ORC_HASH_V4`; 6.4 .. 7.0 have
  :data:`ORC_HASH_V3`.  Another hash is told by the data: nearly every entry's CFA
  is based on SP, 5 before and 3 after the renumbering.

Without a header, version 2 is told from version 1 by the data: bit 11 (``end`` in
version 2) is never set in version 1, and the entry code always has end-of-stack
entries.  Entries are normalised to the version-3 meaning, registers to the
numbering before 7.1 (the ``ORC_REG_*`` constants here).
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from kdumpkit.dump.errors import DumpError

if TYPE_CHECKING:
    import drgn

ORC_REG_UNDEFINED = 0
ORC_REG_PREV_SP = 1
ORC_REG_DX = 2
ORC_REG_DI = 3
ORC_REG_BP = 4
ORC_REG_SP = 5
ORC_REG_R10 = 6
ORC_REG_R13 = 7
ORC_REG_BP_INDIRECT = 8
ORC_REG_SP_INDIRECT = 9
#: Only in the 7.1 numbering (its 1); 10 is free in the older one.
ORC_REG_AX = 10

#: Linux 7.1's register numbers -> the ORC_REG_* constants above.
_V4_REGS = (
    ORC_REG_UNDEFINED,
    ORC_REG_AX,
    ORC_REG_DX,
    ORC_REG_SP,
    ORC_REG_BP,
    ORC_REG_DI,
    ORC_REG_R10,
    ORC_REG_R13,
    ORC_REG_PREV_SP,
    ORC_REG_SP_INDIRECT,
    ORC_REG_BP_INDIRECT,
    11,
    12,
    13,
    14,
    15,
)

#: ``.orc_header`` of Linux 6.4 .. 7.0 (version 3) and of 7.1+ (version 4).
ORC_HASH_V3 = bytes.fromhex("fe5d32bf581bd63b2ca9a5c65ba5a625eab3fe24")
ORC_HASH_V4 = bytes.fromhex("137c36ad7627c4dd55932176bb0ecdbd5041fc82")
ORC_HEADER_SIZE = 20
#: Entries read to tell version 3 from 4 when the header hash is unknown.
SAMPLE_ENTRIES = 1 << 14

ORC_TYPE_UNDEFINED = 0
ORC_TYPE_END_OF_STACK = 1
ORC_TYPE_CALL = 2
ORC_TYPE_REGS = 3
ORC_TYPE_REGS_PARTIAL = 4

#: A vmlinux ORC table bigger than this is corrupt (6.12 has about 450k entries).
MAX_ORC_ENTRIES = 8 << 20
#: A module's ORC table bigger than this is corrupt.
MAX_MODULE_ORC_ENTRIES = 1 << 20

ORC_DTYPE = np.dtype([("sp_offset", "<i2"), ("bp_offset", "<i2"), ("flags", "<u2")])

_V1_TYPES = (ORC_TYPE_CALL, ORC_TYPE_REGS, ORC_TYPE_REGS_PARTIAL, ORC_TYPE_UNDEFINED)


class OrcError(DumpError):
    """The dump's ORC tables are missing or corrupt."""


@dataclass(frozen=True)
class OrcEntry:
    """One ORC entry, in the version-3 meaning of ``type``."""

    sp_offset: int
    bp_offset: int
    sp_reg: int
    bp_reg: int
    type: int
    signal: bool

    @property
    def ends_stack(self) -> bool:
        """True where unwinding stops (end of stack, or nothing known)."""
        return self.type in (ORC_TYPE_END_OF_STACK, ORC_TYPE_UNDEFINED) or (
            self.sp_reg == ORC_REG_UNDEFINED
        )


def decode_orc_flags(sp_offset: int, bp_offset: int, flags: int, version: int) -> OrcEntry:
    """Decode one entry's ``flags`` word of the given format version."""
    sp_reg = flags & 0xF
    bp_reg = (flags >> 4) & 0xF
    if version >= 4:
        sp_reg, bp_reg = _V4_REGS[sp_reg], _V4_REGS[bp_reg]
    if version >= 3:
        orc_type = (flags >> 8) & 0x7
        signal = bool(flags & 0x800)
    else:
        end_bit = 0x800 if version == 2 else 0x400
        orc_type = _V1_TYPES[(flags >> 8) & 0x3]
        if flags & end_bit:
            orc_type = ORC_TYPE_END_OF_STACK
        elif sp_reg == ORC_REG_UNDEFINED:
            orc_type = ORC_TYPE_UNDEFINED
        if version == 2:
            signal = bool(flags & 0x400)
        else:
            # Before the signal bit, the kernel's unwinder treated every regs frame
            # as a signal frame.
            signal = orc_type in (ORC_TYPE_REGS, ORC_TYPE_REGS_PARTIAL)
    return OrcEntry(sp_offset, bp_offset, sp_reg, bp_reg, orc_type, signal)


def orc_format_version(flags: np.ndarray, has_orc_header: bool, header: bytes | None = None) -> int:
    """The ORC format version of a table (see the module docstring), from its
    ``.orc_header`` hash when known, else from the entries' ``flags``."""
    if has_orc_header:
        if header == ORC_HASH_V4:
            return 4
        if header == ORC_HASH_V3:
            return 3
        return orc_register_numbering(flags)
    return 2 if bool(np.any(flags & 0x800)) else 1


def orc_register_numbering(flags: np.ndarray) -> int:
    """3 or 4 for a table with a header: whether the CFA register most entries use is
    SP numbered as before Linux 7.1 (5) or after (3)."""
    sp_regs = np.bincount(flags & 0xF, minlength=16)
    return 4 if sp_regs[3] > sp_regs[ORC_REG_SP] else 3


class OrcTable:
    """One sorted ORC table: the ips (absolute addresses) and their entries."""

    def __init__(
        self,
        ips: np.ndarray,
        entries: np.ndarray,
        version: int,
        module: str | None = None,
        text_end: int | None = None,
    ) -> None:
        if ips.shape[0] != entries.shape[0]:
            raise OrcError("ORC ip and entry tables differ in length")
        if ips.shape[0] and bool(np.any(ips[1:] < ips[:-1])):
            # The kernel sorts the tables at build or load time; a corrupt dump may not.
            order = np.argsort(ips, kind="stable")
            ips, entries = ips[order], entries[order]
        self.ips = ips
        self.entries = entries
        self.version = version
        self.module = module
        self.start = int(ips[0]) if ips.shape[0] else 0
        self.end = text_end if text_end is not None else (int(ips[-1]) + 1 if ips.shape[0] else 0)
        #: Addresses inside [start, end) that are not text (the kernel's data between
        #: _etext and _sinittext).
        self.hole = (0, 0)

    def __len__(self) -> int:
        return int(self.ips.shape[0])

    def covers(self, pc: int) -> bool:
        """Whether ``pc`` falls in the text this table describes."""
        return self.start <= pc < self.end and not self.hole[0] <= pc < self.hole[1]

    def find(self, pc: int) -> OrcEntry | None:
        """The entry that applies at ``pc`` (the last one whose ip is <= pc)."""
        if not self.covers(pc):
            return None
        index = int(np.searchsorted(self.ips, np.uint64(pc), side="right")) - 1
        if index < 0:
            return None
        row = self.entries[index]
        return decode_orc_flags(
            int(row["sp_offset"]), int(row["bp_offset"]), int(row["flags"]), self.version
        )


def read_orc_table(
    prog: drgn.Program,
    ip_table: int,
    entry_table: int,
    count: int,
    version: int | None,
    has_orc_header: bool,
    *,
    module: str | None = None,
    text_end: int | None = None,
    header: bytes | None = None,
) -> OrcTable:
    """Read ``count`` ORC entries from memory into an :class:`OrcTable`."""
    import drgn

    limit = MAX_MODULE_ORC_ENTRIES if module else MAX_ORC_ENTRIES
    if count < 0 or count > limit:
        raise OrcError(
            f"ORC table of {module or 'vmlinux'} has {count} entries, outside 0..{limit}"
        )
    try:
        raw_ips = prog.read(ip_table, 4 * count)
        raw_entries = prog.read(entry_table, ORC_DTYPE.itemsize * count)
    except drgn.FaultError as exc:
        raise OrcError(f"ORC table of {module or 'vmlinux'} is not in the dump: {exc}") from None
    rel = np.frombuffer(raw_ips, dtype="<i4").astype(np.int64)
    # ip = &table[i] + table[i]; kept in uint64 with wrap-around arithmetic.
    ips = np.uint64(ip_table) + (np.arange(count, dtype=np.int64) * 4 + rel).astype(np.uint64)
    entries = np.frombuffer(raw_entries, dtype=ORC_DTYPE)
    if version is None:
        version = orc_format_version(entries["flags"], has_orc_header, header)
    return OrcTable(ips, entries, version, module, text_end)


def _symbol_address(prog: drgn.Program, name: str) -> int | None:
    # Ask kdumpkit's kallsyms first: a miss through prog.symbol() would make the
    # module symbol finder load every module's symbols.
    info = prog.cache.get("kdumpkit.debuginfo")
    symbols = getattr(info, "symbols", None)
    if symbols is not None and hasattr(symbols, "address"):
        return symbols.address(name)
    try:
        return prog.symbol(name).address
    except LookupError:
        return None


#: The kernel's orc_lookup blocks: LOOKUP_BLOCK_ORDER 8, i.e. 256 bytes of text each.
LOOKUP_BLOCK_SIZE = 256
#: More entries than this in one 256-byte text block means a corrupt orc_lookup.
MAX_LOOKUP_WINDOW = 4096


class LazyOrcTable:
    """The vmlinux ORC table, read a window at a time through the kernel's own
    ``orc_lookup`` index (built at boot by ``unwind_init()``), as ``orc_find()`` does:
    for text block ``i = (ip - _stext) / 256`` the entries ``orc_lookup[i] ..
    orc_lookup[i + 1]`` hold the answer.  Text outside ``_stext.._etext`` (.init.text)
    falls back to reading the whole table once."""

    module: str | None = None

    def __init__(
        self,
        prog: drgn.Program,
        ip_table: int,
        entry_table: int,
        count: int,
        lookup: int,
        lookup_blocks: int,
        stext: int,
        etext: int,
        text_end: int,
        version: int,
    ) -> None:
        self.prog = prog
        self.ip_table = ip_table
        self.entry_table = entry_table
        self.count = count
        self.lookup = lookup
        self.lookup_blocks = lookup_blocks
        self.stext = stext
        self.etext = etext
        self.version = version
        self.start = stext
        self.end = text_end
        self.hole = (0, 0)
        self._full: OrcTable | None = None

    def __len__(self) -> int:
        return self.count

    def covers(self, pc: int) -> bool:
        """Whether ``pc`` falls in the text this table describes."""
        return self.start <= pc < self.end and not self.hole[0] <= pc < self.hole[1]

    def full(self) -> OrcTable:
        """The whole table, read once."""
        if self._full is None:
            self._full = read_orc_table(
                self.prog,
                self.ip_table,
                self.entry_table,
                self.count,
                self.version,
                False,
                text_end=self.end,
            )
            self._full.hole = self.hole
            self._full.start = min(self._full.start, self.start)
        return self._full

    def find(self, pc: int) -> OrcEntry | None:
        """The entry that applies at ``pc``."""
        import drgn

        if not self.covers(pc):
            return None
        if self._full is not None or not self.stext <= pc < self.etext:
            return self.full().find(pc)
        block = (pc - self.stext) // LOOKUP_BLOCK_SIZE
        if block + 1 >= self.lookup_blocks:
            return self.full().find(pc)
        try:
            first, last = struct.unpack("<II", self.prog.read(self.lookup + 4 * block, 8))
            last += 1
            if not first < last <= min(self.count, first + MAX_LOOKUP_WINDOW):
                return self.full().find(pc)
            # One entry past the window proves the answer is the last ip <= pc.
            stop = min(last + 1, self.count)
            raw = self.prog.read(self.ip_table + 4 * first, 4 * (stop - first))
            rel = np.frombuffer(raw, dtype="<i4").astype(np.int64)
            # Offsets of the ips from the window's first slot (small, signed).
            offsets = np.arange(stop - first, dtype=np.int64) * 4 + rel
            target = pc - (self.ip_table + 4 * first)
            index = bisect.bisect_right(offsets.tolist(), target) - 1
            if (
                index < 0
                or bool(np.any(offsets[1:] < offsets[:-1]))
                or (first + index + 1 < self.count and index + 1 >= len(offsets))
            ):
                # A corrupt orc_lookup: the window does not bracket pc.
                return self.full().find(pc)
            row = np.frombuffer(
                self.prog.read(self.entry_table + 6 * (first + index), 6), dtype=ORC_DTYPE
            )[0]
        except drgn.FaultError:
            return self.full().find(pc)
        return decode_orc_flags(
            int(row["sp_offset"]), int(row["bp_offset"]), int(row["flags"]), self.version
        )


def load_vmlinux_orc(prog: drgn.Program) -> OrcTable | LazyOrcTable:
    """The kernel image's ORC table, located by its section symbols in kallsyms: it
    covers .text and .init.text, not the data between them."""
    table = _load_vmlinux_orc(prog)
    etext = _symbol_address(prog, "_etext")
    sinittext = _symbol_address(prog, "_sinittext")
    if etext is not None and sinittext is not None and etext < sinittext:
        table.hole = (etext, sinittext)
    return table


def _load_vmlinux_orc(prog: drgn.Program) -> OrcTable | LazyOrcTable:
    import drgn

    start_ip = _symbol_address(prog, "__start_orc_unwind_ip")
    stop_ip = _symbol_address(prog, "__stop_orc_unwind_ip")
    start_orc = _symbol_address(prog, "__start_orc_unwind")
    if start_ip is None or stop_ip is None or start_orc is None:
        raise OrcError(
            "the kernel has no ORC tables (no __start_orc_unwind_ip symbol; "
            "CONFIG_UNWINDER_ORC not set?)"
        )
    size = stop_ip - start_ip
    if size < 0 or size % 4 or size // 4 > MAX_ORC_ENTRIES:
        raise OrcError(f"ORC ip table has a bad size {size:#x}")
    count = size // 4
    header_at = _symbol_address(prog, "__start_orc_header")
    has_header = header_at is not None
    header = _read_orc_header(prog, header_at)
    # The table also covers .init.text (freed after boot, but a boot CPU's idle task
    # still has start_kernel() frames on its stack).
    stext = _symbol_address(prog, "_stext")
    etext = _symbol_address(prog, "_etext")
    ends = [etext, _symbol_address(prog, "_einittext")]
    text_end = max((end for end in ends if end is not None), default=None)
    lookup = _symbol_address(prog, "orc_lookup")
    blocks_at = _symbol_address(prog, "lookup_num_blocks")
    if lookup is None or blocks_at is None or stext is None or etext is None:
        return read_orc_table(
            prog, start_ip, start_orc, count, None, has_header, text_end=text_end, header=header
        )
    if has_header:
        version = _header_version(prog, header, start_orc, count)
    else:
        version = _entry_text_version(prog, start_orc, count, lookup, stext)
    if version is None or text_end is None:
        return read_orc_table(
            prog, start_ip, start_orc, count, None, has_header, text_end=text_end, header=header
        )
    try:
        blocks = struct.unpack("<I", prog.read(blocks_at, 4))[0]
    except drgn.FaultError:
        blocks = 0
    if blocks < 2:
        return read_orc_table(
            prog, start_ip, start_orc, count, version, has_header, text_end=text_end
        )
    return LazyOrcTable(
        prog, start_ip, start_orc, count, lookup, blocks, stext, etext, text_end, version
    )


def _read_orc_header(prog: drgn.Program, address: int | None) -> bytes | None:
    """The 20-byte ``.orc_header`` hash (Linux 6.4+), or None."""
    import drgn

    if address is None:
        return None
    try:
        return prog.read(address, ORC_HEADER_SIZE)
    except drgn.FaultError:
        return None


def _header_version(
    prog: drgn.Program, header: bytes | None, entry_table: int, count: int
) -> int | None:
    """Version 3 or 4 of a table with a header: by its hash, else by the registers of
    its first entries; None if they cannot be read."""
    import drgn

    if header in (ORC_HASH_V3, ORC_HASH_V4):
        return orc_format_version(np.zeros(0, dtype=np.uint16), True, header)
    try:
        raw = prog.read(entry_table, ORC_DTYPE.itemsize * min(count, SAMPLE_ENTRIES))
    except drgn.FaultError:
        return None
    return orc_register_numbering(np.frombuffer(raw, dtype=ORC_DTYPE)["flags"])


def _entry_text_version(
    prog: drgn.Program, entry_table: int, count: int, lookup: int, stext: int
) -> int | None:
    """Version 1 or 2 from the entries of the entry code, which always has end-of-stack
    entries (found through ``orc_lookup``, so the whole table is not read); None if that
    text is not found."""
    import drgn

    low = _symbol_address(prog, "__entry_text_start")
    high = _symbol_address(prog, "__entry_text_end")
    if low is None or high is None or not stext <= low < high:
        return None
    try:
        low_block = (low - stext) // LOOKUP_BLOCK_SIZE
        high_block = (high - stext) // LOOKUP_BLOCK_SIZE + 1
        first = struct.unpack("<I", prog.read(lookup + 4 * low_block, 4))[0]
        last = struct.unpack("<I", prog.read(lookup + 4 * high_block, 4))[0]
        if not first < last < count or last - first > 1 << 16:
            return None
        raw = prog.read(entry_table + 6 * first, 6 * (last - first + 1))
    except drgn.FaultError:
        return None
    return orc_format_version(np.frombuffer(raw, dtype=ORC_DTYPE)["flags"], False)


class OrcUnwindInfo:
    """ORC of the kernel image and, lazily, of each loaded module."""

    def __init__(self, prog: drgn.Program) -> None:
        self.prog = prog
        self.vmlinux: OrcTable | LazyOrcTable = load_vmlinux_orc(prog)
        self._modules: list[OrcTable] | None = None
        self._module_starts: list[int] = []

    def modules(self) -> list[OrcTable]:
        """The ORC tables of loaded modules (empty when module types are unknown)."""
        if self._modules is None:
            self._modules = sorted(
                load_module_orcs(self.prog, self.vmlinux.version), key=lambda table: table.start
            )
            self._module_starts = [table.start for table in self._modules]
        return self._modules

    def table_for(self, pc: int) -> OrcTable | LazyOrcTable | None:
        """The table whose text contains ``pc``."""
        if self.vmlinux.covers(pc):
            return self.vmlinux
        tables = self.modules()
        index = bisect.bisect_right(self._module_starts, pc) - 1
        if index >= 0 and tables[index].covers(pc):
            return tables[index]
        return None

    def find(self, pc: int) -> OrcEntry | None:
        """The ORC entry for ``pc`` in the kernel or a module, or None."""
        table = self.table_for(pc)
        return table.find(pc) if table is not None else None


def load_module_orcs(prog: drgn.Program, version: int) -> list[OrcTable]:
    """Each loaded module's ORC table, from ``struct module``'s ``arch`` member.

    Needs the type of ``struct module`` (BTF); returns [] without it.
    """
    import drgn

    try:
        from drgn.helpers.linux.module import for_each_module
    except ImportError:  # pragma: no cover - drgn < 0.0.31
        return []
    tables: list[OrcTable] = []
    try:
        modules = list(for_each_module(prog))
    except (LookupError, drgn.FaultError, ValueError):
        return []
    for mod in modules:
        try:
            name = mod.name.string_().decode("latin-1", "replace")
            count = int(mod.arch.num_orcs)
            if count == 0:
                continue
            text_start, text_end = _module_text_range(mod)
            table = read_orc_table(
                prog,
                int(mod.arch.orc_unwind_ip.value_()),
                int(mod.arch.orc_unwind.value_()),
                count,
                version,
                False,
                module=name,
                text_end=text_end,
            )
            # The table also holds the entries of the freed .init.text, whose addresses
            # other modules may reuse: keep only the core text's entries.
            keep = (table.ips >= np.uint64(text_start)) & (table.ips < np.uint64(text_end))
            if not bool(keep.any()):
                continue
            table = OrcTable(table.ips[keep], table.entries[keep], version, name, text_end)
            table.start = text_start
            tables.append(table)
        except (AttributeError, LookupError, drgn.FaultError, OrcError):
            continue
    return tables


def _module_text_range(mod: drgn.Object) -> tuple[int, int]:
    # Linux kernel commit ac3b43283923 ("module: replace module_layout with
    # module_memory") (in v6.4) moved the layouts into mod->mem[]; MOD_TEXT is 0.
    try:
        text = mod.mem[0]
        base = int(text.base.value_())
        return base, base + int(text.size)
    except AttributeError:
        pass
    layout = mod.core_layout
    base = int(layout.base.value_())
    return base, base + int(layout.text_size)
