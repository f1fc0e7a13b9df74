"""The kernel's own symbol table, decoded from memory (no vmlinux, no types).

Linux 6.0+ (commit 5fd8fea935a1, "vmcoreinfo: include kallsyms symbols") puts the
addresses of the kallsyms tables in VMCOREINFO:

* ``kallsyms_num_syms`` (u32);
* ``kallsyms_names``: per symbol a length (one byte, or two when the first has
  bit 7 set: ``(b0 & 0x7f) | b1 << 7``, Linux 6.1 "big" symbols) then that many
  token numbers;
* ``kallsyms_token_table`` / ``kallsyms_token_index``: 256 NUL-terminated
  tokens and their u16 offsets; a name's first character is its ``nm`` type;
* ``kallsyms_offsets`` (s32) with ``kallsyms_relative_base`` (u64, relocated at
  boot).  With CONFIG_KALLSYMS_ABSOLUTE_PERCPU (x86_64 SMP until 6.15) an offset
  >= 0 is an absolute (per-CPU) value and a negative one means
  ``relative_base - 1 - offset``; without it every offset is an unsigned
  distance from ``relative_base``.  The first layout is recognised by having
  negative offsets: the second never has any (the kernel is smaller than 2 GiB).
  Without CONFIG_KALLSYMS_BASE_RELATIVE (gone in 6.11) VMCOREINFO gives
  ``kallsyms_addresses`` (u64) instead.  Ard Biesheuvel's "kallsyms: Get rid of
  kallsyms relative base" (2026, in Debian's 7.3) dropped ``kallsyms_relative_base``
  from the kernel and from VMCOREINFO: each offset is place-relative (``_text - . +
  n``, a PC32 relocation), so a symbol's address is ``&kallsyms_offsets[i] +
  kallsyms_offsets[i]``, relocated with the table itself.

:func:`read_kallsyms` decodes the tables through any kernel virtual memory reader
(this layer's :class:`~kdumpkit.kernel.x86_64.X86_64AddressSpace`, or drgn's memory
for :mod:`kdumpkit.debuginfo.symbols`); :func:`kallsyms` is the dump's table for
this layer's users.
"""

from __future__ import annotations

import bisect
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from kdumpkit.dump.base import Dump
from kdumpkit.dump.errors import DumpError
from kdumpkit.dump.vmcoreinfo import VmcoreInfo
from kdumpkit.kernel.image import kernel_image_reader
from kdumpkit.kernel.kallsyms_scan import (
    KallsymsNotFound,
    KallsymsTables,
    PageCache,
    entry_starts,
    scan_kallsyms,
    scan_range,
    zero_filling,
)

#: ``read(vaddr, size) -> bytes``: kernel virtual memory.
ReadFn = Callable[[int, int], bytes]
#: More symbols than any kernel has (~90k cloud, ~250k allyesconfig); beyond it the
#: count is corrupt.
MAX_SYMBOLS = 1 << 22
#: Bounds on kallsyms_names and on the names it expands to (several times the
#: largest kernel's), so that a corrupt table cannot take unbounded memory.
MAX_NAMES_BYTES = 16 << 20
MAX_EXPANDED_BYTES = 32 << 20
#: Bytes of kallsyms_names read per symbol when the tables are not laid out as the
#: linker script puts them (names before the token table).
NAMES_BYTES_PER_SYMBOL = 64
TOKEN_COUNT = 256
#: Tokens expanded at a time (see :func:`expand_tokens`).
EXPAND_CHUNK_TOKENS = 1 << 14
TOKEN_TABLE_MAX = 1 << 16
#: The VMCOREINFO symbols every layout needs.
KALLSYMS_VMCOREINFO = (
    "kallsyms_names",
    "kallsyms_num_syms",
    "kallsyms_token_table",
    "kallsyms_token_index",
)


class KallsymsError(DumpError):
    """The kallsyms tables in the dump are corrupt."""


class KallsymsArrays(NamedTuple):
    """Every kallsyms symbol, sorted by address (stable: kernel order among equals)."""

    names: list[str]
    #: One ``nm`` type letter per symbol.
    types: bytes
    #: uint64 addresses (per-CPU symbols are offsets into the per-CPU area).
    addresses: np.ndarray


@dataclass
class KallsymsTable:
    """Every kallsyms symbol: parallel lists sorted by address."""

    names: list[str]
    types: list[str]
    addresses: list[int]
    _by_name: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # Assigning in reverse keeps the first of duplicate names (built in C).
        count = len(self.names)
        self._by_name = dict(zip(reversed(self.names), range(count - 1, -1, -1), strict=True))

    def __len__(self) -> int:
        return len(self.names)

    def lookup(self, name: str) -> int | None:
        """The address of symbol ``name`` (the lowest, if several share it), or None."""
        index = self._by_name.get(name)
        return None if index is None else self.addresses[index]

    def symbol_type(self, name: str) -> str | None:
        """The ``nm`` type letter of symbol ``name`` (``T`` global text, ``d`` local data...)."""
        index = self._by_name.get(name)
        return None if index is None else self.types[index]

    def size(self, index: int) -> int:
        """Distance from symbol ``index`` to the next higher address (0 for the last)."""
        address = self.addresses[index]
        following = bisect.bisect_right(self.addresses, address, lo=index)
        return self.addresses[following] - address if following < len(self.addresses) else 0

    def symbolize(self, address: int) -> tuple[str, int] | None:
        """``(name, offset)`` of the symbol at or just below ``address``, or None below all."""
        index = bisect.bisect_right(self.addresses, address) - 1
        if index < 0:
            return None
        return self.names[index], address - self.addresses[index]


def missing_kallsyms_symbols(vmcoreinfo: VmcoreInfo) -> list[str]:
    """The VMCOREINFO symbols that decoding kallsyms needs and ``vmcoreinfo`` lacks."""
    missing = [name for name in KALLSYMS_VMCOREINFO if vmcoreinfo.symbol(name) is None]
    # kallsyms_offsets alone is the place-relative layout (no relative base).
    relative = vmcoreinfo.symbol("kallsyms_offsets") is not None
    if not relative and vmcoreinfo.symbol("kallsyms_addresses") is None:
        missing.append("kallsyms_offsets")
    return missing


def decode_tokens(token_table: bytes, token_index: np.ndarray) -> list[bytes]:
    """The 256 tokens: NUL-terminated strings at the offsets of ``token_index``."""
    if len(token_index) != TOKEN_COUNT:
        raise KallsymsError(f"kallsyms_token_index has {len(token_index)} entries, not 256")
    tokens = []
    for start in token_index.tolist():
        end = token_table.find(b"\0", start)
        if start >= len(token_table) or end < 0:
            raise KallsymsError("kallsyms_token_table is truncated")
        tokens.append(token_table[start:end])
    return tokens


def _entry_starts(blob: bytes, count: int) -> tuple[np.ndarray, int]:
    """Where each of the ``count`` entries of kallsyms_names starts (its length byte),
    and where the last one ends."""
    starts, pos = entry_starts(blob, count)
    if pos > len(blob):
        raise KallsymsError(
            f"kallsyms_names is cut short: {count} names overrun its {len(blob)} bytes"
        )
    return starts, pos


def decode_names(
    blob: bytes, count: int, token_table: bytes, token_index: np.ndarray
) -> tuple[list[str], bytes]:
    """Expand the first ``count`` compressed names of ``blob`` (kallsyms_names) at once.

    Returns the names and their ``nm`` type letters (each name's first character).
    """
    tokens = decode_tokens(token_table, token_index)
    starts, end = _entry_starts(blob, count)
    raw = np.frombuffer(blob, dtype=np.uint8)
    lengths = raw[starts].astype(np.int64)
    big = lengths >= 0x80
    second_byte = starts[big] + 1
    lengths[big] = (lengths[big] & 0x7F) | (raw[second_byte].astype(np.int64) << 7)
    if not lengths.all():
        raise KallsymsError(f"kallsyms_names entry {int(np.argmin(lengths))} is empty")
    # Every token number of every entry, in order, then each token's bytes.
    is_token = np.ones(end, dtype=bool)
    is_token[starts] = False
    is_token[second_byte] = False
    token_ids = raw[:end][is_token]
    token_bytes = np.frombuffer(b"".join(tokens), dtype=np.uint8)
    token_len = np.array([len(token) for token in tokens], dtype=np.int32)
    token_start = np.cumsum(token_len, dtype=np.int32) - token_len
    first_piece = np.cumsum(lengths) - lengths
    # uint8 pieces (one byte each, not four) when every token fits: megabytes fewer to map
    narrow = token_len.astype(np.uint8) if token_len.max() <= 0xFF else token_len
    entry_len = np.add.reduceat(narrow[token_ids], first_piece, dtype=np.int32)
    total = int(entry_len.sum(dtype=np.int64))
    if total > MAX_EXPANDED_BYTES:
        raise KallsymsError(f"kallsyms_names expands to {total} bytes, a corrupt token table")
    if not entry_len.all():
        raise KallsymsError("kallsyms_names has a name that expands to nothing")
    if not token_len.all():
        token_ids = token_ids[narrow[token_ids] > 0]  # empty tokens add nothing
    text = expand_tokens(token_ids, token_len, token_start, token_bytes, total)
    # The first byte of each expanded name is its nm type letter; replace it with a
    # separator so that one split yields every name.
    first = np.cumsum(entry_len) - entry_len
    types = text[first].tobytes()
    text[first] = ord("\n")
    names = text.tobytes().decode("latin-1").split("\n")[1:]
    if len(names) != count:
        raise KallsymsError("kallsyms_names has a name containing a newline")
    return names, types


def expand_tokens(
    token_ids: np.ndarray,
    token_len: np.ndarray,
    token_start: np.ndarray,
    token_bytes: np.ndarray,
    total: int,
) -> np.ndarray:
    """The ``total`` bytes that the (non-empty) tokens ``token_ids`` expand to.

    Byte k of the text is ``token_bytes[source[k]]``: within a token ``source`` grows by
    one per byte and it jumps where each token starts, so it is a running sum of ones
    and jumps.  Done a slice of tokens at a time: the int32 temporaries stay small
    enough to be reused instead of mapped afresh (a third of the time was page faults).
    """
    token_end = token_start + token_len - 1
    text = np.empty(total, dtype=np.uint8)
    at = 0
    for first in range(0, len(token_ids), EXPAND_CHUNK_TOKENS):
        ids = token_ids[first : first + EXPAND_CHUNK_TOKENS]
        piece_len = token_len[ids]
        piece_out = np.cumsum(piece_len, dtype=np.int32)
        size = int(piece_out[-1])
        piece_out -= piece_len
        jump = token_start[ids]
        jump[1:] -= token_end[ids[:-1]]
        source = np.ones(size, dtype=np.int32)
        source[piece_out] = jump
        np.cumsum(source, out=source)
        np.take(token_bytes, source, out=text[at : at + size])
        at += size
    return text


def kallsyms_addresses(vmcoreinfo: VmcoreInfo, read: ReadFn, count: int) -> np.ndarray:
    """The ``count`` symbols' addresses, in kernel (name table) order."""
    offsets_at = vmcoreinfo.symbol("kallsyms_offsets")
    base_at = vmcoreinfo.symbol("kallsyms_relative_base")
    if offsets_at is not None and base_at is None:
        # "kallsyms: Get rid of kallsyms relative base": each entry is relative to
        # its own address, as the ORC ip table is.
        offsets = np.frombuffer(read(offsets_at, 4 * count), dtype="<i4").astype(np.int64)
        places = np.arange(count, dtype=np.int64) * 4 + offsets
        return np.uint64(offsets_at) + places.astype(np.uint64)
    if offsets_at is not None and base_at is not None:
        offsets = np.frombuffer(read(offsets_at, 4 * count), dtype="<i4").astype(np.int64)
        relative_base = np.uint64(int.from_bytes(read(base_at, 8), "little"))
        if (offsets < 0).any():
            # CONFIG_KALLSYMS_ABSOLUTE_PERCPU: non-negative entries are absolute
            # (per-cpu offsets), negative ones count down from the base.
            below_base = (-1 - offsets).astype(np.uint64)
            return np.where(offsets >= 0, offsets.astype(np.uint64), relative_base + below_base)
        return relative_base + offsets.astype(np.uint32).astype(np.uint64)
    addresses_at = vmcoreinfo.symbol("kallsyms_addresses")
    if addresses_at is None:
        raise KallsymsError("VMCOREINFO has neither kallsyms_offsets nor kallsyms_addresses")
    return np.frombuffer(read(addresses_at, 8 * count), dtype="<u8").copy()


def read_kallsyms(vmcoreinfo: VmcoreInfo, read: ReadFn) -> KallsymsArrays:
    """Decode the kallsyms tables that ``vmcoreinfo`` locates, reading them with ``read``.

    Raises :class:`KallsymsError` when the tables are not located or are corrupt; a
    read that fails raises what ``read`` raises.
    """
    missing = missing_kallsyms_symbols(vmcoreinfo)
    if missing:
        raise KallsymsError(f"VMCOREINFO has no {', '.join(missing)} (kernel older than 6.0?)")
    names_at, count_at, table_at, index_at = (
        vmcoreinfo.symbol(name) or 0 for name in KALLSYMS_VMCOREINFO
    )
    count = int.from_bytes(read(count_at, 4), "little")
    if not 0 < count <= MAX_SYMBOLS:
        raise KallsymsError(f"kallsyms_num_syms is {count}, outside 1..{MAX_SYMBOLS}")
    token_index = np.frombuffer(read(index_at, TOKEN_COUNT * 2), dtype="<u2")
    table_size = int(token_index.max()) + 256
    if table_size > TOKEN_TABLE_MAX:
        raise KallsymsError(f"kallsyms_token_index points {table_size} bytes past the token table")
    token_table = read(table_at, table_size)
    names_size = table_at - names_at
    if not 0 < names_size <= MAX_NAMES_BYTES:
        # The linker script puts names, markers then the token table; anything else is odd.
        names_size = min(MAX_NAMES_BYTES, count * NAMES_BYTES_PER_SYMBOL)
    names, types = decode_names(read(names_at, names_size), count, token_table, token_index)
    addresses = kallsyms_addresses(vmcoreinfo, read, count)
    # Absolute per-CPU symbols may come anywhere in the kernel's (name table) order.
    return _sorted_arrays(names, types, addresses)


#: VMCOREINFO symbols that are not kallsyms names, and the symbol that holds them:
#: x86_64's swapper_pg_dir is a macro for init_top_pgt (init_level4_pgt before 4.13);
#: node_online_map is ``node_states[N_ONLINE]``, inside node_states.
VMCOREINFO_ALIASES = {
    "swapper_pg_dir": ("init_top_pgt", "init_level4_pgt"),
    "node_online_map": ("node_states",),
}
#: The kernel image is placed at a multiple of this (x86_64 CONFIG_PHYSICAL_ALIGN is
#: at least 2 MiB, arm64's image is 64 KiB aligned): ``_text - KERNELOFFSET`` is too.
KERNEL_ALIGN = 64 << 10
#: VMCOREINFO symbols that are a variable's value: x86_64's vmemmap is the macro
#: ``(struct page *)VMEMMAP_START``, i.e. vmemmap_base's value under KASLR (5.x on).
VMCOREINFO_VALUES = {"vmemmap": "vmemmap_base"}


def vmcoreinfo_symbols(vmcoreinfo: VmcoreInfo) -> dict[str, int]:
    """VMCOREINFO's ``SYMBOL()`` entries but the kallsyms tables themselves."""
    return {
        key[len("SYMBOL(") : -1]: value
        for key, value in vmcoreinfo.typed().items()
        if key.startswith("SYMBOL(")
        and not key.startswith("SYMBOL(kallsyms_")
        and isinstance(value, int)
    }


def checked_positions(vmcoreinfo: VmcoreInfo, names: list[str]) -> dict[str, list[int]]:
    """Where in ``names`` each symbol :func:`vmcoreinfo_mismatch` looks at is."""
    wanted = set(vmcoreinfo_symbols(vmcoreinfo)) | {"_text"} | set(VMCOREINFO_VALUES.values())
    for aliases in VMCOREINFO_ALIASES.values():
        wanted.update(aliases)
    # One text search per wanted name (list.index would walk the list each time).
    text = "\n" + "\n".join(names) + "\n"
    line_starts: np.ndarray | None = None
    positions: dict[str, list[int]] = {}
    for name in sorted(wanted):
        needle = f"\n{name}\n"
        at = text.find(needle)
        while at >= 0:
            if line_starts is None:
                raw = np.frombuffer(text.encode("latin-1"), dtype=np.uint8)
                line_starts = np.flatnonzero(raw == ord("\n"))
            index = int(np.searchsorted(line_starts, at))
            positions.setdefault(name, []).append(index)
            at = text.find(needle, at + 1)
    return positions


def vmcoreinfo_mismatch(
    vmcoreinfo: VmcoreInfo,
    positions: dict[str, list[int]],
    addresses: np.ndarray,
    read: ReadFn,
) -> str | None:
    """Why the symbols at ``addresses`` (``positions`` from :func:`checked_positions`)
    are not the kernel's own, or None when each VMCOREINFO ``SYMBOL()`` (but the
    kallsyms tables) lands exactly on its symbol, and ``_text`` moved back by
    ``KERNELOFFSET`` is aligned as a link address is."""
    wanted = vmcoreinfo_symbols(vmcoreinfo)
    if "_stext" not in wanted:
        return "VMCOREINFO has no SYMBOL(_stext)"
    where = {name: [int(addresses[i]) for i in found] for name, found in positions.items()}

    def holds_value(name: str | None, value: int) -> bool:
        return name in where and any(
            int.from_bytes(read(address, 8), "little") == value for address in where[name]
        )

    # _stext first: a placement that misses it is not kallsyms at all (see find_kallsyms).
    for name, value in sorted(wanted.items(), key=lambda item: item[0] != "_stext"):
        if any(address == value for address in where.get(name, ())):
            continue
        if holds_value(name, value) or holds_value(VMCOREINFO_VALUES.get(name), value):
            continue  # VMCOREINFO_SYMBOL_ARRAY of a pointer (mem_section) gives its value
        holders = [alias for alias in VMCOREINFO_ALIASES.get(name, ()) if alias in where]
        if any(_holds(addresses, start, value) for alias in holders for start in where[alias]):
            continue
        if name not in where and not holders:
            return f"it has no symbol {name} (a kernel without CONFIG_KALLSYMS_ALL?)"
        return f"its {name} is not at SYMBOL({name})={value:x}"
    offset = vmcoreinfo.kerneloffset
    text = where.get("_text")
    if offset is not None and text and (text[0] - offset) % KERNEL_ALIGN:
        return f"its _text {text[0]:#x} less KERNELOFFSET={offset:x} is not a link address"
    return None


def _holds(addresses: np.ndarray, start: int, value: int) -> bool:
    """Whether ``value`` lies in the symbol at ``start`` (before the next higher one)."""
    higher = addresses[addresses > np.uint64(start)]
    end = int(higher.min()) if len(higher) else start + 1
    return start <= value < end


@dataclass(frozen=True)
class FoundKallsyms:
    """kallsyms located by scanning the kernel image and checked against VMCOREINFO."""

    tables: KallsymsTables
    #: ``vmcoreinfo`` plus the tables' ``SYMBOL()`` lines, as a 6.0+ kernel writes them.
    vmcoreinfo: VmcoreInfo
    decoded: KallsymsArrays


def find_kallsyms(vmcoreinfo: VmcoreInfo, read: ReadFn) -> FoundKallsyms:
    """Find the kallsyms tables by their shape (:mod:`kdumpkit.kernel.kallsyms_scan`) and
    keep the placement whose symbols agree with every VMCOREINFO symbol.

    ``read`` must give zeros for pages it cannot read.  Raises :class:`KallsymsError`
    with one sentence when none does.
    """
    read = PageCache(read)
    rejected: list[str] = []
    names_cache: dict[
        tuple[int, int, int, int], tuple[list[str], bytes, dict[str, list[int]]] | None
    ] = {}
    try:
        for tables in scan_kallsyms(vmcoreinfo, read):
            located = tables.vmcoreinfo(vmcoreinfo)
            key = (tables.names, tables.count, tables.token_table, tables.token_index)
            if key not in names_cache:
                try:
                    names, types = _decode_located_names(located, read, tables.count)
                    positions = checked_positions(vmcoreinfo, names)
                    names_cache[key] = names, types, positions
                except KallsymsError as exc:
                    names_cache[key] = None
                    rejected.append(f"at {tables.token_table:#x} {exc}")
            decoded_names = names_cache[key]
            if decoded_names is None:
                continue
            try:
                addresses = kallsyms_addresses(located, read, tables.count)
            except KallsymsError:
                continue
            names, types, positions = decoded_names
            why = vmcoreinfo_mismatch(vmcoreinfo, positions, addresses, read)
            if why is None:
                return FoundKallsyms(tables, located, _sorted_arrays(names, types, addresses))
            rejected.append(f"at {tables.token_table:#x} ({tables.layout}) {why}")
    except KallsymsNotFound as exc:
        raise KallsymsError(str(exc)) from None
    if not rejected:
        low, high = scan_range(vmcoreinfo)
        raise KallsymsError(f"no kallsyms tables in the kernel image ({low:#x}-{high:#x})")
    # Say why the placement that got _stext right was refused, if one did.
    plausible = [reason for reason in rejected if " _stext" not in reason] or rejected
    raise KallsymsError(
        f"the kallsyms-shaped tables in the kernel image disagree with VMCOREINFO: {plausible[0]}"
    )


def _decode_located_names(
    vmcoreinfo: VmcoreInfo, read: ReadFn, count: int
) -> tuple[list[str], bytes]:
    names_at, _, table_at, index_at = (vmcoreinfo.symbol(name) or 0 for name in KALLSYMS_VMCOREINFO)
    token_index = np.frombuffer(read(index_at, TOKEN_COUNT * 2), dtype="<u2")
    token_table = read(table_at, int(token_index.max()) + 256)
    blob = read(names_at, min(MAX_NAMES_BYTES, max(1, table_at - names_at)))
    return decode_names(blob, count, token_table, token_index)


def _sorted_arrays(names: list[str], types: bytes, addresses: np.ndarray) -> KallsymsArrays:
    """The symbols sorted by address (stable), as :func:`read_kallsyms` returns them."""
    if bool((addresses[1:] < addresses[:-1]).any()):
        order = np.argsort(addresses, kind="stable")
        names = [names[i] for i in order.tolist()]
        types = np.frombuffer(types, dtype=np.uint8)[order].tobytes()
        addresses = addresses[order]
    return KallsymsArrays(names, types, addresses)


def dump_reader(dump: Dump) -> ReadFn:
    """The dump's kernel image, zeros where a page is missing (for the scan).  Read through
    the image mapping, which needs no page tables (the translators may look kernel
    variables up through kallsyms)."""
    return zero_filling(kernel_image_reader(dump), (DumpError,))


_found: weakref.WeakKeyDictionary[Dump, FoundKallsyms | KallsymsError] = weakref.WeakKeyDictionary()


def found_kallsyms(dump: Dump) -> FoundKallsyms:
    """The dump's kallsyms found by scanning, once per dump object (raises
    :class:`KallsymsError`, the same each time, when it is not found)."""
    result = _found.get(dump)
    if result is None:
        assert dump.vmcoreinfo is not None
        try:
            result = find_kallsyms(dump.vmcoreinfo, dump_reader(dump))
        except KallsymsError as exc:
            result = exc
        _found[dump] = result
    if isinstance(result, KallsymsError):
        raise result
    return result


def located_vmcoreinfo(dump: Dump) -> VmcoreInfo | None:
    """The dump's VMCOREINFO if it locates kallsyms (6.0+); else, for older kernels, the
    same with the ``SYMBOL()`` lines of the tables found by scanning the image (raises
    :class:`KallsymsError` if they are not found).  None without VMCOREINFO."""
    info = dump.vmcoreinfo
    if info is None or not missing_kallsyms_symbols(info):
        return info
    return found_kallsyms(dump).vmcoreinfo


def load_kallsyms(dump: Dump) -> KallsymsTable | None:
    """Decode the dump's kallsyms tables, located by VMCOREINFO or else found by scanning
    the kernel image; None when neither finds them."""
    info = dump.vmcoreinfo
    if info is None:
        return None
    if missing_kallsyms_symbols(info):
        try:
            decoded = found_kallsyms(dump).decoded  # before Linux 6.0
        except KallsymsError:
            return None  # CONFIG_KALLSYMS=n, or not recognisable
    else:
        # The tables are in the kernel image: read through its mapping, which needs no
        # page tables (kdumpkit.kernel.x86_64 looks variables up through these tables).
        decoded = read_kallsyms(info, kernel_image_reader(dump))
    return KallsymsTable(
        names=decoded.names,
        types=list(decoded.types.decode("latin-1")),
        addresses=decoded.addresses.tolist(),
    )


_tables: weakref.WeakKeyDictionary[Dump, KallsymsTable | None] = weakref.WeakKeyDictionary()


def kallsyms(dump: Dump) -> KallsymsTable | None:
    """The dump's kallsyms table, decoded once per dump object (None if not locatable)."""
    if dump not in _tables:
        _tables[dump] = load_kallsyms(dump)
    return _tables[dump]
