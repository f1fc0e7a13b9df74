"""BTF, the kernel's compact type format, parsed from the dump's own memory.

The kernel keeps its BTF between ``__start_BTF`` and ``__stop_BTF``; each module's
is *split* BTF whose type ids and string offsets continue those of vmlinux.  Parsing
only walks the type records once to find where each starts (the blob of a 6.1 kernel
is 4 MB, ~120k types); names are indexed with numpy, and each type is decoded into a
:class:`BtfType` only when asked for.  Every offset read from the blob is bounds
checked: a corrupt blob raises :class:`BtfError` with one line saying what is wrong.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from kdumpkit.dump.errors import DumpError

BTF_MAGIC = 0xEB9F
HEADER = struct.Struct("<HBBIIIII")
#: A BTF blob larger than this is not a kernel's.
MAX_BTF_BYTES = 256 << 20
#: Names looked up by searching the string section and comparing every type's name
#: offset (~0.7 ms each: a scan of vmlinux's 1.7 MB of strings) before the dict of
#: every string and the sorted name index are built (~30 ms): ``bt`` looks up 5
#: names, ``ps`` 15, ``report`` ~20; a long session pays for the index once.
NAME_SEARCHES_BEFORE_INDEX = 32


class BtfError(DumpError):
    """The BTF blob is missing, truncated or corrupt."""


class Kind(enum.IntEnum):
    """BTF_KIND_* values (include/uapi/linux/btf.h)."""

    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


#: Extra 32-bit words after the 3-word header, as a function of vlen: (fixed, per vlen item).
_EXTRA_WORDS: dict[int, tuple[int, int]] = {
    Kind.UNKN: (0, 0),
    Kind.INT: (1, 0),
    Kind.PTR: (0, 0),
    Kind.ARRAY: (3, 0),
    Kind.STRUCT: (0, 3),
    Kind.UNION: (0, 3),
    Kind.ENUM: (0, 2),
    Kind.FWD: (0, 0),
    Kind.TYPEDEF: (0, 0),
    Kind.VOLATILE: (0, 0),
    Kind.CONST: (0, 0),
    Kind.RESTRICT: (0, 0),
    Kind.FUNC: (0, 0),
    Kind.FUNC_PROTO: (0, 2),
    Kind.VAR: (1, 0),
    Kind.DATASEC: (0, 3),
    Kind.FLOAT: (0, 0),
    Kind.DECL_TAG: (1, 0),
    Kind.TYPE_TAG: (0, 0),
    Kind.ENUM64: (0, 3),
}
_FIXED = [0] * 32
_PER_ITEM = [-1] * 32  # -1: unknown kind
for _k, (_f, _p) in _EXTRA_WORDS.items():
    _FIXED[_k], _PER_ITEM[_k] = _f, _p

_FIXED_WORDS = np.array(_FIXED, dtype=np.int64)
_ITEM_WORDS = np.array(_PER_ITEM, dtype=np.int64)
#: info bits that are zero in every valid type record (between vlen and kind, and
#: between kind and kind_flag)
_INFO_UNUSED_BITS = 0x60FF0000
#: rounds of :func:`_walk_vectorised` before it leaves the blob to the record-by-record walk
_WALK_ROUNDS = 64

INT_SIGNED = 1
INT_CHAR = 2
INT_BOOL = 4


class Member(NamedTuple):
    """A struct/union member: bit offset and bit-field size (0 if not a bit field)."""

    name: str | None
    type_id: int
    bit_offset: int
    bitfield_size: int


class Enumerator(NamedTuple):
    name: str
    value: int


class Param(NamedTuple):
    name: str | None
    type_id: int


class SecVar(NamedTuple):
    """A DATASEC entry: a VAR's type id, its offset in the section and its size."""

    type_id: int
    offset: int
    size: int


@dataclass(frozen=True)
class BtfType:
    """One decoded BTF type record.

    ``size`` is the byte size (INT, STRUCT, UNION, ENUM, ENUM64, FLOAT, DATASEC);
    ``ref`` the referenced type id (PTR, TYPEDEF, qualifiers, FUNC, VAR, DECL_TAG,
    TYPE_TAG, and the return type of FUNC_PROTO).  ``items`` holds the members,
    enumerators, parameters or section variables.
    """

    id: int
    kind: Kind
    name: str | None
    kind_flag: bool
    vlen: int
    size: int = 0
    ref: int = 0
    #: INT: (encoding, bit offset, bits); ARRAY: (element type, index type, nelems);
    #: VAR: (linkage,); DECL_TAG: (component index,).
    extra: tuple[int, ...] = ()
    items: tuple = ()

    @property
    def is_signed(self) -> bool:
        """INT: signed; ENUM/ENUM64: signed values (kind_flag, Linux 6.0+)."""
        if self.kind == Kind.INT:
            return bool(self.extra[0] & INT_SIGNED)
        return self.kind_flag


def _walk_vectorised(words: memoryview) -> np.ndarray | None:
    """Word offset of each type record, found without walking them one by one (~5 ms
    instead of ~25 ms for vmlinux); None when the blob needs the record-by-record walk
    (corrupt, or a shape this method does not settle).

    Every word that could be a record's info word (a known kind, the unused bits zero)
    gives a candidate record and the offset where the next one would start.  The true
    records form the one chain from offset 0, and a true record is only ever followed
    by a true one; so candidates that no candidate (nor the start) leads to are false,
    and dropping them round after round leaves exactly the chain, which is checked.
    """
    all_words = np.frombuffer(words, dtype=np.uint32)
    count = len(all_words)
    if count < 3:
        return None
    info = all_words[1:].astype(np.int64)  # info[i]: the info word of a record at i
    kind = (info >> 24) & 0x1F
    item_words = _ITEM_WORDS[kind]
    candidates = np.flatnonzero(
        (item_words >= 0) & (kind != Kind.UNKN) & ((info & _INFO_UNUSED_BITS) == 0)
    )
    following = (
        candidates
        + 3
        + _FIXED_WORDS[kind[candidates]]
        + item_words[candidates] * (info[candidates] & 0xFFFF)
    )
    fits = following <= count
    candidates, following = candidates[fits], following[fits]
    reached = np.zeros(count + 1, dtype=bool)
    for _ in range(_WALK_ROUNDS):
        reached[:] = False
        reached[following] = True
        reached[0] = True
        kept = reached[candidates]
        if kept.all():
            break
        candidates, following = candidates[kept], following[kept]
    else:
        return None
    if (
        not len(candidates)
        or candidates[0] != 0
        or following[-1] != count
        or bool((following[:-1] != candidates[1:]).any())
    ):
        return None
    return candidates


class Btf:
    """A parsed BTF blob (vmlinux's, or a module's split on top of ``base``)."""

    def __init__(self, data: bytes, *, base: Btf | None = None, name: str = "vmlinux") -> None:
        self.name = name
        self.base = base
        if len(data) > MAX_BTF_BYTES:
            raise BtfError(f"{name} BTF: {len(data)} bytes is larger than any kernel's")
        if len(data) < HEADER.size:
            raise BtfError(f"{name} BTF: only {len(data)} bytes, shorter than the header")
        magic = int.from_bytes(data[:2], "little")
        if magic != BTF_MAGIC:
            if magic == 0x9FEB:
                raise BtfError(f"{name} BTF: big-endian BTF is not supported")
            raise BtfError(f"{name} BTF: bad magic {magic:#06x} (expected {BTF_MAGIC:#06x})")
        (_, version, _, hdr_len, type_off, type_len, str_off, str_len) = HEADER.unpack_from(data)
        if version != 1:
            raise BtfError(f"{name} BTF: unsupported version {version}")
        if hdr_len < HEADER.size or hdr_len > len(data):
            raise BtfError(f"{name} BTF: bad header length {hdr_len}")
        body = len(data) - hdr_len
        if type_off + type_len > body or str_off + str_len > body or type_off % 4 or type_len % 4:
            raise BtfError(
                f"{name} BTF: sections (types {type_off}+{type_len}, strings {str_off}+{str_len})"
                f" do not fit in {body} bytes"
            )
        self.strings = bytes(data[hdr_len + str_off : hdr_len + str_off + str_len])
        if self.strings and (self.strings[-1] != 0 or (base is None and self.strings[0] != 0)):
            raise BtfError(f"{name} BTF: string section is not NUL-terminated")
        types = bytes(data[hdr_len + type_off : hdr_len + type_off + type_len])
        self._words = memoryview(types).cast("I")
        #: Ids of this blob's types start here (1 for vmlinux, after the base's for split BTF).
        self.start_id: int = base.end_id if base is not None else 1
        self.str_start: int = len(base.strings) + base.str_start if base is not None else 0
        self._offsets = self._walk(self._words)
        self.end_id: int = self.start_id + len(self._offsets)
        self._name_index: tuple[np.ndarray, np.ndarray] | None = None
        self._name_offsets: np.ndarray | None = None
        self._string_offsets: dict[str, list[int]] | None = None
        #: name -> this blob's ids, for the names looked up before the index is built
        self._searched: dict[str, list[int]] = {}
        self._enumerators: dict[str, int] | None = None
        #: enumerator name -> type id (or None), for the names looked up before the index
        self._enumerators_found: dict[str, int | None] = {}
        self._decoded: dict[int, BtfType] = {}

    def _walk(self, words: memoryview) -> np.ndarray:
        """Word offset of each type record, checking that each fits."""
        offsets = _walk_vectorised(words)
        return offsets if offsets is not None else self._walk_one_by_one(words)

    def _walk_one_by_one(self, words: memoryview) -> np.ndarray:
        """:meth:`_walk` record after record (~25 ms for vmlinux), with the error that
        says where a corrupt blob goes wrong."""
        offsets: list[int] = []
        append = offsets.append
        fixed, per_item = _FIXED, _PER_ITEM
        n = len(words)
        i = 0
        while i < n:
            if i + 3 > n:
                raise BtfError(f"{self.name} BTF: type {self.start_id + len(offsets)} truncated")
            info = words[i + 1]
            kind = (info >> 24) & 0x1F
            item = per_item[kind]
            if item < 0:
                raise BtfError(
                    f"{self.name} BTF: type {self.start_id + len(offsets)} has unknown kind {kind}"
                )
            append(i)
            i += 3 + fixed[kind] + item * (info & 0xFFFF)
        if i != n:
            raise BtfError(
                f"{self.name} BTF: last type {self.start_id + len(offsets) - 1} truncated"
            )
        return np.array(offsets, dtype=np.int64)

    # --- ids and strings ------------------------------------------------------------

    def __len__(self) -> int:
        """Number of type ids in this blob (the base's not counted, void not counted)."""
        return len(self._offsets)

    def owner(self, type_id: int) -> Btf:
        """The blob (this one or a base) that defines ``type_id``."""
        btf: Btf | None = self
        while btf is not None:
            if type_id >= btf.start_id:
                if type_id >= btf.end_id:
                    break
                return btf
            btf = btf.base
        raise BtfError(f"{self.name} BTF: type id {type_id} out of range")

    def string(self, offset: int) -> str | None:
        """The string at ``offset`` (split BTF: offsets past the base's strings are ours)."""
        if offset == 0:
            return None
        if offset < self.str_start:
            assert self.base is not None
            return self.base.string(offset)
        local = offset - self.str_start
        if local >= len(self.strings):
            raise BtfError(f"{self.name} BTF: string offset {offset} out of range")
        end = self.strings.find(b"\0", local)
        return self.strings[local:end].decode("latin-1") or None

    def _strings_by_name(self) -> dict[str, list[int]]:
        """String -> its offsets (several when the blob repeats a string)."""
        if self._string_offsets is None:
            # latin-1 keeps one character per byte, so character offsets are byte offsets.
            parts = self.strings.decode("latin-1").split("\0")
            lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts)) + 1
            starts = np.cumsum(lengths) - lengths + self.str_start
            # Assigning in reverse keeps the first of equal strings.
            firsts = dict(zip(reversed(parts), reversed(starts.tolist()), strict=True))
            by_name = {part: [offset] for part, offset in firsts.items()}
            if len(firsts) < len(parts):
                first_of = np.fromiter(map(firsts.__getitem__, parts), np.int64, len(parts))
                for i in np.flatnonzero(first_of != starts).tolist():
                    by_name[parts[i]].append(int(starts[i]))
            by_name.pop("", None)
            self._string_offsets = by_name
        return self._string_offsets

    def _search_string(self, name: str) -> list[int]:
        """The offsets of the strings equal to ``name``, by searching the string section."""
        try:
            raw = name.encode("latin-1")  # the strings are read as latin-1 too
        except UnicodeEncodeError:
            return []
        if not raw or b"\0" in raw:
            return []
        strings = self.strings
        found = []
        if strings.startswith(raw + b"\0"):  # split BTF need not start with ""
            found.append(self.str_start)
        # The search skips ahead on the needle's last bytes: only the frequent NUL
        # goes last, and a match must also follow a NUL (not end a longer string).
        needle = raw + b"\0"
        at = strings.find(needle, 1)
        while at >= 0:
            if strings[at - 1] == 0:
                found.append(self.str_start + at)
            at = strings.find(needle, at + 1)
        return found

    # --- lookups ----------------------------------------------------------------------

    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        """(name offsets sorted, type ids in that order) of this blob's named types."""
        if self._name_index is None:
            name_offs = self._type_name_offsets()
            order = np.argsort(name_offs, kind="stable")
            self._name_index = (name_offs[order], order + self.start_id)
        return self._name_index

    def _type_name_offsets(self) -> np.ndarray:
        """Each type's name offset, in id order."""
        if self._name_offsets is None:
            words = np.frombuffer(self._words, dtype=np.uint32)
            self._name_offsets = words[self._offsets].astype(np.int64)
        return self._name_offsets

    def ids_by_name(self, name: str) -> list[int]:
        """Ids of the types (and VARs, FUNCs, DATASECs) named ``name``, this blob then bases."""
        out: list[int] = []
        searched = self._searched.get(name)
        if searched is not None:
            out.extend(searched)
        elif self._string_offsets is None and len(self._searched) < NAME_SEARCHES_BEFORE_INDEX:
            # A few names: no dict of ~100k strings, no sort of ~100k offsets.
            offsets = self._search_string(name)
            found: list[int] = []
            if offsets:
                at = np.flatnonzero(np.isin(self._type_name_offsets(), offsets))
                found = (at + self.start_id).tolist()
            self._searched[name] = found
            out.extend(found)
        else:
            offsets = self._strings_by_name().get(name, [])
            if offsets:
                sorted_offs, ids = self._index()
                found_ids = []
                for offset in offsets:
                    lo, hi = np.searchsorted(sorted_offs, [offset, offset + 1])
                    found_ids.extend(ids[lo:hi].tolist())
                out.extend(sorted(found_ids))
        if self.base is not None:
            out.extend(self.base.ids_by_name(name))
        return out

    def enumerator(self, name: str) -> tuple[int, int] | None:
        """(enum type id, value) of an enumerator named ``name``, or None."""
        if self._enumerators is None and len(self._enumerators_found) < NAME_SEARCHES_BEFORE_INDEX:
            if name not in self._enumerators_found:
                self._enumerators_found[name] = self._find_enumerator(name)
            type_id = self._enumerators_found[name]
        else:
            type_id = self._enumerator_index().get(name)
        if type_id is None:
            return self.base.enumerator(name) if self.base is not None else None
        for item in self.type(type_id).items:
            if item.name == name:
                return type_id, item.value
        return None

    def _enumerator_index(self) -> dict[str, int]:
        """Enumerator name -> the first ENUM/ENUM64 type that has it (decodes every enum)."""
        if self._enumerators is None:
            self._enumerators = {}
            kinds = self._kinds()
            for idx in np.flatnonzero((kinds == Kind.ENUM) | (kinds == Kind.ENUM64)).tolist():
                btype = self.type(self.start_id + idx)
                for item in btype.items:
                    self._enumerators.setdefault(item.name, btype.id)
        return self._enumerators

    def _kinds(self) -> np.ndarray:
        """Each type's kind, in id order."""
        words = np.frombuffer(self._words, dtype=np.uint32)
        return (words[self._offsets + 1] >> 24) & 0x1F

    def _find_enumerator(self, name: str) -> int | None:
        """The first ENUM/ENUM64 type of this blob with an enumerator ``name``: the words
        equal to the name's string offset that are the name of an enum's item (~1 ms)."""
        if self._string_offsets is not None:
            offsets = self._string_offsets.get(name, [])
        else:
            offsets = self._search_string(name)
        if not offsets:
            return None
        words = np.frombuffer(self._words, dtype=np.uint32)
        at = np.flatnonzero(np.isin(words, offsets))
        record = np.searchsorted(self._offsets, at, side="right") - 1
        at, record = at[record >= 0], record[record >= 0]
        start = self._offsets[record]
        info = words[start + 1]
        kind = (info >> 24) & 0x1F
        item_words = np.where(kind == Kind.ENUM, 2, np.where(kind == Kind.ENUM64, 3, 0))
        item = (at - start - 3) // np.maximum(item_words, 1)
        is_name = (item_words > 0) & (at >= start + 3) & (item < (info & 0xFFFF))
        is_name &= (at - start - 3) % np.maximum(item_words, 1) == 0
        found = record[is_name]
        return int(found.min()) + self.start_id if len(found) else None

    def kind_of(self, type_id: int) -> Kind:
        """The kind of ``type_id`` without decoding the record."""
        if type_id == 0:
            return Kind.UNKN
        btf = self.owner(type_id)
        pos = int(btf._offsets[type_id - btf.start_id])
        return Kind((btf._words[pos + 1] >> 24) & 0x1F)

    def type(self, type_id: int) -> BtfType:
        """Decode type ``type_id`` (cached).  Id 0 is void and has no record."""
        btf = self.owner(type_id)
        if btf is not self:
            return btf.type(type_id)
        cached = self._decoded.get(type_id)
        if cached is None:
            cached = self._decode(type_id)
            self._decoded[type_id] = cached
        return cached

    def _decode(self, type_id: int) -> BtfType:
        words = self._words
        pos = int(self._offsets[type_id - self.start_id])
        name_off, info, size_or_type = words[pos], words[pos + 1], words[pos + 2]
        kind = Kind((info >> 24) & 0x1F)
        vlen = info & 0xFFFF
        kind_flag = bool(info >> 31)
        name = self.string(name_off)
        p = pos + 3
        common: dict[str, Any] = {
            "id": type_id,
            "kind": kind,
            "name": name,
            "kind_flag": kind_flag,
            "vlen": vlen,
        }
        if kind == Kind.INT:
            enc = words[p]
            extra = ((enc >> 24) & 0x0F, (enc >> 16) & 0xFF, enc & 0xFF)
            return BtfType(**common, size=size_or_type, extra=extra)
        if kind == Kind.ARRAY:
            return BtfType(**common, extra=(words[p], words[p + 1], words[p + 2]))
        if kind in (Kind.STRUCT, Kind.UNION):
            members = []
            for j in range(vlen):
                m_name, m_type, m_off = words[p + 3 * j], words[p + 3 * j + 1], words[p + 3 * j + 2]
                if kind_flag:
                    members.append(
                        Member(self.string(m_name), m_type, m_off & 0xFFFFFF, m_off >> 24)
                    )
                else:
                    members.append(Member(self.string(m_name), m_type, m_off, 0))
            return BtfType(**common, size=size_or_type, items=tuple(members))
        if kind == Kind.ENUM:
            signed = kind_flag
            values = []
            for j in range(vlen):
                value = words[p + 2 * j + 1]
                if signed and value >= 1 << 31:
                    value -= 1 << 32
                values.append(Enumerator(self.string(words[p + 2 * j]) or "", value))
            return BtfType(**common, size=size_or_type, items=tuple(values))
        if kind == Kind.ENUM64:
            values = []
            for j in range(vlen):
                value = words[p + 3 * j + 1] | (words[p + 3 * j + 2] << 32)
                if kind_flag and value >= 1 << 63:
                    value -= 1 << 64
                values.append(Enumerator(self.string(words[p + 3 * j]) or "", value))
            return BtfType(**common, size=size_or_type, items=tuple(values))
        if kind == Kind.FUNC_PROTO:
            params = tuple(
                Param(self.string(words[p + 2 * j]), words[p + 2 * j + 1]) for j in range(vlen)
            )
            return BtfType(**common, ref=size_or_type, items=params)
        if kind == Kind.DATASEC:
            entries = tuple(
                SecVar(words[p + 3 * j], words[p + 3 * j + 1], words[p + 3 * j + 2])
                for j in range(vlen)
            )
            return BtfType(**common, size=size_or_type, items=entries)
        if kind in (Kind.VAR, Kind.DECL_TAG):
            extra_word = words[p]
            if kind == Kind.DECL_TAG and extra_word >= 1 << 31:
                extra_word -= 1 << 32
            return BtfType(**common, ref=size_or_type, extra=(extra_word,))
        if kind in (Kind.FLOAT,):
            return BtfType(**common, size=size_or_type)
        # PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, TYPE_TAG: size_or_type is a type.
        return BtfType(**common, ref=size_or_type if kind != Kind.FWD else 0)

    def iter_ids(self) -> range:
        """This blob's own type ids."""
        return range(self.start_id, self.end_id)

    def ids_of_kind(self, kind: Kind) -> list[int]:
        """This blob's type ids of one kind (vectorised; no record is decoded)."""
        words = np.frombuffer(self._words, dtype=np.uint32)
        kinds = (words[self._offsets + 1] >> 24) & 0x1F
        return (np.flatnonzero(kinds == kind) + self.start_id).tolist()

    # --- sizes --------------------------------------------------------------------------

    def sizeof(self, type_id: int, _depth: int = 0) -> int:
        """Byte size of a type, resolving typedefs, qualifiers and arrays."""
        if _depth > 64:
            raise BtfError(f"{self.name} BTF: type {type_id} refers to itself")
        btype = self.type(type_id)
        if btype.kind in (Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.FLOAT):
            return btype.size
        if btype.kind == Kind.PTR:
            return 8
        if btype.kind == Kind.ARRAY:
            return btype.extra[2] * self.sizeof(btype.extra[0], _depth + 1)
        if btype.kind in (Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT,
                          Kind.TYPE_TAG, Kind.VAR):  # fmt: skip
            return self.sizeof(btype.ref, _depth + 1)
        raise BtfError(f"{self.name} BTF: type {type_id} ({btype.kind.name}) has no size")


def check_blob_header(data: bytes, name: str = "vmlinux") -> int:
    """Total length of the BTF blob starting at ``data`` per its header (header + sections)."""
    if len(data) < HEADER.size:
        raise BtfError(f"{name} BTF: only {len(data)} bytes, shorter than the header")
    (magic, _, _, hdr_len, type_off, type_len, str_off, str_len) = HEADER.unpack_from(data)
    if magic != BTF_MAGIC:
        raise BtfError(f"{name} BTF: bad magic {magic:#06x} (expected {BTF_MAGIC:#06x})")
    return hdr_len + max(type_off + type_len, str_off + str_len)
