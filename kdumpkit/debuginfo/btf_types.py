"""drgn types built from BTF, lazily, and the type finder that serves them by name.

A drgn type is built only when drgn asks for it (or for a member of a type already
built: members are lazy callables), so opening a dump costs nothing per type.
Split BTF (modules) refers to vmlinux's ids below its own start id; a type is cached
under the blob that defines it, so vmlinux types are shared by every module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import cast

import drgn

from kdumpkit.debuginfo.btf import INT_BOOL, Btf, BtfError, BtfType, Kind, Member

#: drgn's type kinds and the BTF kinds that can answer them.
_BTF_KINDS_FOR: dict[drgn.TypeKind, tuple[Kind, ...]] = {
    drgn.TypeKind.STRUCT: (Kind.STRUCT, Kind.FWD),
    drgn.TypeKind.UNION: (Kind.UNION, Kind.FWD),
    drgn.TypeKind.ENUM: (Kind.ENUM, Kind.ENUM64),
    drgn.TypeKind.TYPEDEF: (Kind.TYPEDEF,),
    drgn.TypeKind.INT: (Kind.INT,),
    drgn.TypeKind.BOOL: (Kind.INT,),
    drgn.TypeKind.FLOAT: (Kind.FLOAT,),
}
_QUALIFIERS = {
    Kind.CONST: drgn.Qualifiers.CONST,
    Kind.VOLATILE: drgn.Qualifiers.VOLATILE,
    Kind.RESTRICT: drgn.Qualifiers.RESTRICT,
}
#: Names drgn's C parser uses for integer types, and the GCC spellings BTF has.
_INT_SPELLINGS = {
    "unsigned long": ("long unsigned int",),
    "long": ("long int",),
    "unsigned int": (),
    "int": (),
    "unsigned short": ("short unsigned int",),
    "short": ("short int",),
    "unsigned char": (),
    "signed char": (),
    "char": (),
    "unsigned long long": ("long long unsigned int",),
    "long long": ("long long int",),
    "_Bool": (),
}
_MAX_CHAIN = 64
#: Kinds a struct member cannot have (void, functions, and BTF's non-type records).
_NOT_MEMBER_KINDS = frozenset(
    {Kind.UNKN, Kind.FUNC, Kind.FUNC_PROTO, Kind.VAR, Kind.DATASEC, Kind.DECL_TAG}
)
_TRANSPARENT = frozenset({Kind.TYPEDEF, Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG})


def _underlying_kind(btf: Btf, type_id: int) -> Kind:
    """The kind behind typedefs and qualifiers."""
    for _ in range(_MAX_CHAIN):
        kind = btf.kind_of(type_id)
        if kind not in _TRANSPARENT:
            return kind
        type_id = btf.type(type_id).ref
    raise BtfError(f"{btf.name} BTF: type {type_id} refers to itself")


class BtfTypes:
    """Turns BTF type ids into drgn types for one program."""

    def __init__(self, prog: drgn.Program, vmlinux: Btf) -> None:
        self.prog = prog
        self.vmlinux = vmlinux
        #: Blobs searched by name, vmlinux first, then modules' split BTF.
        self.blobs: list[Btf] = [vmlinux]
        self._cache: dict[tuple[int, int], drgn.Type] = {}

    def add_module(self, btf: Btf) -> None:
        """Make a module's split BTF searchable (after vmlinux's)."""
        self.blobs.append(btf)

    # --- id -> drgn type -------------------------------------------------------------

    def type(self, btf: Btf, type_id: int, _depth: int = 0) -> drgn.Type:
        """The drgn type of ``type_id`` in ``btf`` (or in one of its bases)."""
        if type_id == 0:
            return self.prog.void_type()
        owner = btf.owner(type_id)
        key = (id(owner), type_id)
        cached = self._cache.get(key)
        if cached is None:
            if _depth > _MAX_CHAIN:
                raise BtfError(f"{owner.name} BTF: type {type_id} refers to itself")
            btype = owner.type(type_id)
            try:
                cached = self._build(owner, btype, _depth)
            except (ValueError, OverflowError, TypeError) as exc:
                # drgn refuses the type (an impossible size or offset): corrupt BTF.
                raise BtfError(
                    f"{owner.name} BTF: type {type_id} ({btype.kind.name}) is invalid: {exc}"
                ) from None
            self._cache[key] = cached
        return cached

    def _lazy(self, btf: Btf, type_id: int) -> Callable[[], drgn.Type]:
        return lambda: self.type(btf, type_id)

    def _build(self, btf: Btf, btype: BtfType, depth: int) -> drgn.Type:
        prog = self.prog
        kind = btype.kind
        if kind == Kind.INT:
            if btype.size not in (1, 2, 4, 8, 16):
                raise BtfError(f"{btf.name} BTF: integer {btype.id} has size {btype.size}")
            if btype.extra[0] & INT_BOOL:
                return prog.bool_type(btype.name or "_Bool", btype.size)
            return prog.int_type(btype.name or "int", btype.size, btype.is_signed)
        if kind == Kind.FLOAT:
            if btype.size not in (4, 8):  # the sizes drgn can represent
                raise BtfError(f"{btf.name} BTF: float {btype.id} has size {btype.size}")
            return prog.float_type(btype.name or "double", btype.size)
        if kind == Kind.PTR:
            return prog.pointer_type(self.type(btf, btype.ref, depth + 1), 8)
        if kind == Kind.ARRAY:
            element, _, nelems = btype.extra
            if _underlying_kind(btf, element) in _NOT_MEMBER_KINDS:
                raise BtfError(f"{btf.name} BTF: array {btype.id} has elements without a size")
            return prog.array_type(self.type(btf, element, depth + 1), nelems)
        if kind in (Kind.STRUCT, Kind.UNION):
            members = [self._member(btf, m) for m in btype.items]
            make = prog.struct_type if kind == Kind.STRUCT else prog.union_type
            return make(btype.name, btype.size, members)
        if kind == Kind.FWD:
            make = prog.union_type if btype.kind_flag else prog.struct_type
            return make(btype.name)
        if kind in (Kind.ENUM, Kind.ENUM64):
            if btype.vlen == 0 and btype.size == 0:
                return prog.enum_type(btype.name, None, None)
            compatible = self._enum_int(btype)
            enumerators = [drgn.TypeEnumerator(e.name, e.value) for e in btype.items]
            return prog.enum_type(btype.name, compatible, enumerators)
        if kind == Kind.TYPEDEF:
            return prog.typedef_type(btype.name or "", self.type(btf, btype.ref, depth + 1))
        if kind in _QUALIFIERS:
            qualifiers = drgn.Qualifiers.NONE
            while btype.kind in _QUALIFIERS or btype.kind == Kind.TYPE_TAG:
                qualifiers |= _QUALIFIERS.get(btype.kind, drgn.Qualifiers.NONE)
                depth += 1
                if depth > _MAX_CHAIN:
                    raise BtfError(f"{btf.name} BTF: type {btype.id} refers to itself")
                if btype.ref == 0:
                    return prog.void_type(qualifiers=qualifiers)
                btype = btf.type(btype.ref)
            base = self.type(btf, btype.id, depth + 1)
            return base.qualified(base.qualifiers | qualifiers)
        if kind == Kind.TYPE_TAG:
            return self.type(btf, btype.ref, depth + 1)
        if kind == Kind.FUNC:
            return self.type(btf, btype.ref, depth + 1)
        if kind == Kind.FUNC_PROTO:
            params = list(btype.items)
            variadic = bool(params) and params[-1].type_id == 0 and params[-1].name is None
            if variadic:
                params.pop()
            return prog.function_type(
                self.type(btf, btype.ref, depth + 1),
                [drgn.TypeParameter(self._lazy(btf, p.type_id), p.name) for p in params],
                variadic,
            )
        if kind == Kind.VAR:
            return self.type(btf, btype.ref, depth + 1)
        raise BtfError(f"{btf.name} BTF: type {btype.id} of kind {kind.name} is not a C type")

    def _bit_field(self, btf: Btf, type_id: int, bits: int) -> Callable[[], drgn.Object]:
        def build() -> drgn.Object:
            try:
                return drgn.Object(self.prog, self.type(btf, type_id), bit_field_size=bits)
            except (ValueError, TypeError, OverflowError) as exc:
                raise BtfError(f"{btf.name} BTF: bad bit field of type {type_id}: {exc}") from None

        return build

    def _member(self, btf: Btf, member: object) -> drgn.TypeMember:
        name, type_id, bit_offset, bitfield_size = cast(Member, member)
        if _underlying_kind(btf, type_id) in _NOT_MEMBER_KINDS:
            raise BtfError(f"{btf.name} BTF: member {name!r} has type {type_id}, which has no size")
        if bitfield_size:
            return drgn.TypeMember(self._bit_field(btf, type_id, bitfield_size), name, bit_offset)
        if btf.kind_of(type_id) == Kind.INT:
            # Bit fields before kind_flag (pahole < 1.18): the size is in the INT itself.
            encoding = btf.type(type_id)
            bits, size = encoding.extra[2], encoding.size
            if bits and bits != size * 8:
                return drgn.TypeMember(
                    self._bit_field(btf, type_id, bits), name, bit_offset + encoding.extra[1]
                )
        return drgn.TypeMember(self._lazy(btf, type_id), name, bit_offset)

    def _enum_int(self, btype: BtfType) -> drgn.Type:
        signed = btype.kind_flag or any(e.value < 0 for e in btype.items)
        names = {1: "char", 2: "short", 4: "int", 8: "long"}
        base = names.get(btype.size, "int")
        return self.prog.int_type(base if signed else f"unsigned {base}", btype.size or 4, signed)

    # --- name -> drgn type ------------------------------------------------------------

    def find(self, kinds: Iterable[drgn.TypeKind], name: str) -> drgn.Type | None:
        """The first type named ``name`` of one of ``kinds``; full definitions win over FWDs."""
        wanted: set[Kind] = set()
        want_bool = want_int = False
        for kind in kinds:
            wanted.update(_BTF_KINDS_FOR.get(kind, ()))
            want_bool |= kind == drgn.TypeKind.BOOL
            want_int |= kind == drgn.TypeKind.INT
        if not wanted:
            return None
        spellings = (name, *_INT_SPELLINGS.get(name, ())) if (want_int or want_bool) else (name,)
        for blob in self.blobs:
            for spelling in spellings:
                found = self._find_in(blob, wanted, spelling, kinds, want_int, want_bool)
                if found is not None:
                    return found
        return None

    def _find_in(
        self,
        blob: Btf,
        wanted: set[Kind],
        name: str,
        kinds: Iterable[drgn.TypeKind],
        want_int: bool,
        want_bool: bool,
    ) -> drgn.Type | None:
        forward: int | None = None
        kind_set = set(kinds)
        for type_id in blob.ids_by_name(name):
            btf_kind = blob.kind_of(type_id)
            if btf_kind not in wanted:
                continue
            if btf_kind == Kind.FWD:
                union = blob.type(type_id).kind_flag
                if (drgn.TypeKind.UNION if union else drgn.TypeKind.STRUCT) in kind_set:
                    forward = type_id if forward is None else forward
                continue
            if btf_kind == Kind.INT:
                is_bool = bool(blob.type(type_id).extra[0] & INT_BOOL)
                if (is_bool and not want_bool) or (not is_bool and not want_int):
                    continue
            if btf_kind in (Kind.ENUM, Kind.ENUM64) and blob.type(type_id).vlen == 0:
                forward = type_id if forward is None else forward
                continue
            return self.type(blob, type_id)
        return self.type(blob, forward) if forward is not None else None

    def type_finder(
        self, prog: drgn.Program, kinds: drgn.TypeKindSet, name: str, filename: str | None
    ) -> drgn.Type | None:
        """drgn type-finder callback: BTF knows no file names, so ``filename`` is ignored."""
        return self.find(kinds, name)
