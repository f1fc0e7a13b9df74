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
"""

from __future__ import annotations

import bisect
import weakref
from dataclasses import dataclass, field

import numpy as np

from kdumpkit.dump.base import Dump
from kdumpkit.dump.errors import DumpError
from kdumpkit.kernel.x86_64 import X86_64AddressSpace, address_space

#: More symbols than any kernel has; beyond it the count is corrupt.
MAX_SYMBOLS = 1 << 22
#: kallsyms_names is read in chunks of this size, up to MAX_NAMES_BYTES.
NAMES_CHUNK = 1 << 20
MAX_NAMES_BYTES = 64 << 20
TOKEN_COUNT = 256
TOKEN_TABLE_MAX = 1 << 16


class KallsymsError(DumpError):
    """The kallsyms tables in the dump are corrupt."""


@dataclass
class KallsymsTable:
    """Every kallsyms symbol: parallel lists sorted by address."""

    names: list[str]
    types: list[str]
    addresses: list[int]
    _by_name: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for index in range(len(self.names) - 1, -1, -1):
            self._by_name[self.names[index]] = index  # the first of duplicate names wins

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


def _extend_names(space: X86_64AddressSpace, start: int, data: bytearray) -> None:
    if len(data) >= MAX_NAMES_BYTES:
        raise KallsymsError(f"kallsyms_names is longer than {MAX_NAMES_BYTES} bytes")
    data += space.read(start + len(data), NAMES_CHUNK, zero_missing=True)


def _read_names(
    space: X86_64AddressSpace, start: int, count: int, tokens: list[bytes]
) -> tuple[list[str], list[str]]:
    # Pass 1 (sequential, lengths only): where each entry's token numbers are.
    data = bytearray()
    length_bytes: list[int] = []  # positions of the length bytes, which are not tokens
    entry_tokens: list[int] = []  # number of tokens of each entry
    pos = 0
    for entry in range(count):
        while pos + 2 > len(data):
            _extend_names(space, start, data)
        length = data[pos]
        length_bytes.append(pos)
        pos += 1
        if length & 0x80:  # Linux 6.1: two-byte lengths for "big" symbols
            length = (length & 0x7F) | (data[pos] << 7)
            length_bytes.append(pos)
            pos += 1
        if length == 0:
            raise KallsymsError(f"kallsyms_names entry {entry} is empty")
        entry_tokens.append(length)
        pos += length
    while pos > len(data):
        _extend_names(space, start, data)
    # Pass 2 (numpy): expand every token of every entry at once.
    token_numbers = np.delete(np.frombuffer(bytes(data[:pos]), dtype=np.uint8), length_bytes)
    table = np.frombuffer(b"".join(tokens), dtype=np.uint8)
    token_len = np.array([len(t) for t in tokens], dtype=np.int64)
    token_start = np.concatenate(([0], np.cumsum(token_len)[:-1]))
    out_len = token_len[token_numbers]
    out_start = np.concatenate(([0], np.cumsum(out_len)[:-1]))
    within = np.arange(int(out_len.sum())) - np.repeat(out_start, out_len)
    text = (
        table[np.repeat(token_start[token_numbers], out_len) + within].tobytes().decode("latin-1")
    )
    first_token = np.concatenate(([0], np.cumsum(entry_tokens)[:-1]))
    entry_len = np.add.reduceat(out_len, first_token)
    bounds = np.concatenate(([0], np.cumsum(entry_len))).tolist()
    types = [text[bounds[i] : bounds[i] + 1] for i in range(count)]
    names = [text[bounds[i] + 1 : bounds[i + 1]] for i in range(count)]
    return names, types


def _read_tokens(space: X86_64AddressSpace, table: int, index: int) -> list[bytes]:
    offsets = np.frombuffer(space.read(index, TOKEN_COUNT * 2), dtype="<u2")
    size = int(offsets.max()) + 256
    if size > TOKEN_TABLE_MAX:
        raise KallsymsError(f"kallsyms_token_index points {size} bytes past the token table")
    raw = space.read(table, size, zero_missing=True)
    tokens = []
    for offset in offsets.tolist():
        end = raw.find(b"\0", offset)
        tokens.append(raw[offset : end if end >= 0 else len(raw)])
    return tokens


def _addresses(space: X86_64AddressSpace, offsets_at: int, base_at: int, count: int) -> list[int]:
    offsets = np.frombuffer(space.read(offsets_at, count * 4), dtype="<i4").astype(np.int64)
    base = np.uint64(space.read_u64(base_at))
    negative = offsets < 0
    if negative.any():
        # relative_base - 1 - offset, i.e. relative_base + (|offset| - 1), in unsigned 64 bits
        addresses = np.where(
            negative, base + (-offsets - 1).astype(np.uint64), offsets.astype(np.uint64)
        )
    else:
        addresses = base + offsets.astype(np.uint64)
    return addresses.tolist()


def load_kallsyms(dump: Dump) -> KallsymsTable | None:
    """Decode the dump's kallsyms tables, or None when VMCOREINFO does not locate them."""
    info = dump.vmcoreinfo
    if info is None:
        return None
    keys = ("num_syms", "names", "token_table", "token_index", "offsets", "relative_base")
    where = {key: info.symbol(f"kallsyms_{key}") for key in keys}
    if any(value is None for value in where.values()):
        return None  # before Linux 6.0, or CONFIG_KALLSYMS=n
    at = {key: value for key, value in where.items() if value is not None}
    space = address_space(dump)
    count = space.read_u32(at["num_syms"])
    if not 0 < count <= MAX_SYMBOLS:
        raise KallsymsError(f"kallsyms_num_syms is {count}, outside 1..{MAX_SYMBOLS}")
    tokens = _read_tokens(space, at["token_table"], at["token_index"])
    names, types = _read_names(space, at["names"], count, tokens)
    address_list = _addresses(space, at["offsets"], at["relative_base"], count)
    # Absolute per-CPU symbols come first; sort everything by address for bisect.
    order = sorted(range(count), key=address_list.__getitem__)
    return KallsymsTable(
        names=[names[i] for i in order],
        types=[types[i] for i in order],
        addresses=[address_list[i] for i in order],
    )


_tables: weakref.WeakKeyDictionary[Dump, KallsymsTable | None] = weakref.WeakKeyDictionary()


def kallsyms(dump: Dump) -> KallsymsTable | None:
    """The dump's kallsyms table, decoded once per dump object (None if not locatable)."""
    if dump not in _tables:
        _tables[dump] = load_kallsyms(dump)
    return _tables[dump]
