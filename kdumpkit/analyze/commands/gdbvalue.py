"""Values printed the way crash prints them: gdb's ``print`` with pretty structures, no
``<repeats N times>`` and at most 256 elements (crash's settings).

Rules (checked against crash 9.0.2 on the 6.1 fixture):

* a structure or union is ``{``, one ``name = value`` per member at two more spaces of
  indentation, separated by ``,``, then ``}`` at the structure's own indentation; an
  anonymous member prints its value without ``name =``;
* an array is ``{a, b, c}``; its elements are printed two spaces deeper, so an array of
  structures reads ``{{`` / members / ``}, {`` / ... / ``}}``;
* a ``char`` array is a string of every byte but a final NUL, escaped as C does (``\\000``);
  strings and arrays stop after 256 elements with ``...`` (crash's ``print elements``); a
  flexible array prints its address;
* a pointer is ``0x...`` (``0x0`` for NULL) followed by `` <symbol+offset>`` when it points
  into a kernel symbol, or by the string for ``char *``;
* integers are decimal (hexadecimal with ``-x``), a ``char`` is ``115 's'``, a ``bool``
  ``true``/``false``, an enum its enumerator's name.
"""

from __future__ import annotations

import re

import drgn

from kdumpkit.analyze.commands.base import CommandError
from kdumpkit.analyze.facts.symbols import symbolize

_CHAR_NAMES = {"char", "signed char", "unsigned char"}
_ESCAPES = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r",
            34: '\\"', 92: "\\\\"}  # fmt: skip
#: crash sets gdb's ``print elements`` to 256: strings and arrays stop there, then ``...``.
PRINT_ELEMENTS = 256


def _underlying(type_: drgn.Type) -> drgn.Type:
    return type_.unaliased().unqualified()


def _is_char(type_: drgn.Type) -> bool:
    type_ = _underlying(type_)
    return type_.kind == drgn.TypeKind.INT and type_.name in _CHAR_NAMES


def quote_bytes(data: bytes) -> str:
    """``"..."`` as gdb quotes a string (octal escapes for the unprintable)."""
    out = []
    for byte in data:
        if byte in _ESCAPES:
            out.append(_ESCAPES[byte])
        elif 32 <= byte < 127:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _char_literal(value: int) -> str:
    byte = value & 0xFF
    if byte == 39:
        return "'\\''"
    if byte == 34:
        return "'\"'"
    return "'" + quote_bytes(bytes([byte]))[1:-1] + "'"


def _pointer_text(prog: drgn.Program, obj: drgn.Object, target: drgn.Type) -> str:
    value = obj.value_()
    if value == 0:
        return "0x0"
    text = f"0x{value:x}"
    if _is_char(target):
        try:
            raw = prog.read(value, PRINT_ELEMENTS)
        except drgn.FaultError:
            return f"{text} <error: Cannot access memory at address {text}>"
        string = raw.split(b"\0", 1)[0]
        return f"{text} {quote_bytes(string)}"
    name = symbolize(prog, value)
    return f"{text} <{name}>" if name else text


def _c_string(prog: drgn.Program, address: int, limit: int) -> bytes:
    """The bytes at ``address`` up to a NUL (at most ``limit``; what can be read)."""
    out = b""
    while len(out) < limit:
        chunk = min(limit - len(out), 4096 - (address + len(out)) % 4096)
        try:
            data = prog.read(address + len(out), chunk)
        except drgn.FaultError:
            break
        nul = data.find(b"\0")
        if nul >= 0:
            return out + data[:nul]
        out += data
    return out


def members_text(obj: drgn.Object, members: list[str], hexadecimal: bool = False) -> str:
    """``  a = 1,`` lines of the named members of a structure, as crash cuts them out of
    gdb's print of the whole structure (no comma after the structure's last member).
    Raises LookupError for a member the structure does not have."""
    lines = []
    for member in members:
        value = obj.subobject_(member)
        comma = "" if _is_last_member(obj.type_, member) else ","
        lines.append(f"  {member} = {format_value(value, 2, hexadecimal)}{comma}\n")
    return "".join(lines)


def _is_last_member(type_: drgn.Type, path: str) -> bool:
    """Whether the last step of ``path`` (``a.b.c``) names its structure's last member."""
    *parents, last = path.split(".")
    type_ = _underlying(type_)
    try:
        for name in parents:
            type_ = type_.member(name.split("[", 1)[0]).type
            while type_.kind in (drgn.TypeKind.TYPEDEF, drgn.TypeKind.ARRAY):
                type_ = type_.type
    except LookupError:
        return False
    named = [m.name for m in type_.members or () if m.name]
    return bool(named) and named[-1] == last.split("[", 1)[0]


def format_value(obj: drgn.Object, indent: int = 0, hexadecimal: bool = False) -> str:
    """``obj`` in crash's (gdb's) notation; nested lines are indented from ``indent``."""
    type_ = _underlying(obj.type_)
    kind = type_.kind
    if kind in (drgn.TypeKind.STRUCT, drgn.TypeKind.UNION, drgn.TypeKind.CLASS):
        members = type_.members or ()
        if not members:
            return "{<No data fields>}"
        pad = " " * (indent + 2)
        lines = []
        for member in members:
            if member.name:
                value = format_value(obj.subobject_(member.name), indent + 2, hexadecimal)
                lines.append(f"{pad}{member.name} = {value}")
            elif not member.bit_field_size:  # an anonymous struct or union, not padding
                inner = _anonymous_member(obj, member)
                lines.append(pad + format_value(inner, indent + 2, hexadecimal))
        return "{\n" + ",\n".join(lines) + "\n" + " " * indent + "}"
    if kind == drgn.TypeKind.ARRAY:
        length = type_.length or 0
        if not length and obj.address_ is not None:  # a flexible array: its address
            text = _pointer_text(obj.prog_, obj.address_of_(), type_)
            if not _is_char(type_.type):
                return text
            # gdb prints the string found there, as for a char pointer
            data = _c_string(obj.prog_, obj.address_, PRINT_ELEMENTS + 1)
            more = "..." if len(data) > PRINT_ELEMENTS else ""
            return f"{text} {quote_bytes(data[:PRINT_ELEMENTS])}{more}"
        shown = min(length, PRINT_ELEMENTS)
        more = "..." if length > shown else ""
        if _is_char(type_.type):
            if obj.address_ is None:  # a value, not in memory
                data = obj.to_bytes_()[:shown]
            else:
                data = obj.prog_.read(obj.address_, shown)
            if not more and data.endswith(b"\0"):
                data = data[:-1]  # the terminator
            return quote_bytes(data) + more
        elements = [format_value(obj[i], indent + 2, hexadecimal) for i in range(shown)]
        return "{" + ", ".join(elements) + more + "}"
    if kind == drgn.TypeKind.POINTER:
        return _pointer_text(obj.prog_, obj, type_.type)
    if kind == drgn.TypeKind.BOOL:
        return "true" if obj.value_() else "false"
    if kind == drgn.TypeKind.ENUM:
        value = obj.value_()
        for enumerator in type_.enumerators or ():
            if enumerator.value == value:
                return enumerator.name
        return str(value)
    if kind == drgn.TypeKind.INT:
        value = obj.value_()
        if hexadecimal:
            return f"0x{value & ((1 << (8 * type_.size)) - 1):x}"
        if type_.name in _CHAR_NAMES:
            return f"{value} {_char_literal(value)}"
        return str(value)
    if kind == drgn.TypeKind.FLOAT:
        return repr(obj.value_())
    raise ValueError(f"cannot print a {kind.name.lower()} value")


def _anonymous_member(obj: drgn.Object, member: drgn.TypeMember) -> drgn.Object:
    """An unnamed struct or union member of ``obj``."""
    if obj.address_ is not None:
        return drgn.Object(obj.prog_, member.type, address=obj.address_ + member.bit_offset // 8)
    return drgn.Object.from_bytes_(
        obj.prog_, member.type, obj.to_bytes_(), bit_offset=member.bit_offset
    )


def top_level_text(obj: drgn.Object, hexadecimal: bool = False) -> str:
    """What follows ``$N = ``: a pointer other than ``char *`` gets its type in front,
    as gdb prints a pointer that is not inside a structure."""
    type_ = _underlying(obj.type_)
    text = format_value(obj, 0, hexadecimal)
    if type_.kind == drgn.TypeKind.POINTER and not _is_char(type_.type):
        return f"({obj.type_.type_name()}) {text}"
    return text


def task_struct_text(task: drgn.Object, members: list[str], hexadecimal: bool = False) -> str:
    """crash's ``task`` block of one task: its header, then the named members, or the
    whole task_struct and thread_info."""
    from drgn.helpers.linux.sched import task_cpu

    from kdumpkit.analyze.crashformat import bt_task_header
    from kdumpkit.analyze.facts.tasks import task_comm, task_thread_info_address

    header = bt_task_header(task.pid.value_(), task.value_(), task_cpu(task), task_comm(task))
    struct = task[0]
    try:
        if members:
            try:
                return f"{header}\n{members_text(struct, members, hexadecimal)}\n"
            except LookupError as exc:
                raise CommandError(f"invalid task_struct member: {exc}") from None
        address = task_thread_info_address(task)
        thread_info = drgn.Object(task.prog_, "struct thread_info", address=address)
        return (
            f"{header}\nstruct task_struct {format_value(struct, 0, hexadecimal)}\n\n"
            f"struct thread_info {format_value(thread_info, 0, hexadecimal)}\n\n"
        )
    except drgn.FaultError as exc:
        raise CommandError(f"invalid kernel virtual address: {exc.address:x}") from None


_NAME = r"[A-Za-z_]\w*"
#: ``name[.member[.member]...][,member...]`` as ``struct`` and ``list -s`` take it.
STRUCT_SPEC = re.compile(rf"(?P<name>{_NAME})(?:\.(?P<members>{_NAME}(?:[.\w\[\]]*)"
                         rf"(?:,{_NAME}[.\w\[\]]*)*))?")  # fmt: skip


def aggregate_text(
    prog: drgn.Program, keyword: str, spec: str, address: int, hexadecimal: bool = False
) -> str:
    """crash's ``struct NAME ADDRESS`` / ``struct NAME.a,b ADDRESS``."""
    match = STRUCT_SPEC.fullmatch(spec)
    if match is None:
        raise CommandError(f"invalid data structure reference: {spec}")
    try:
        type_ = prog.type(f"{keyword} {match['name']}")
    except LookupError:
        raise CommandError(f"invalid data structure reference: {match['name']}") from None
    obj = drgn.Object(prog, type_, address=address)
    try:
        if not match["members"]:
            return f"{keyword} {match['name']} {format_value(obj, 0, hexadecimal)}\n"
        members = match["members"].split(",")
        for member in members:
            try:
                obj.subobject_(member)
            except LookupError:
                raise CommandError(
                    f"invalid data structure reference: {match['name']}.{member}"
                ) from None
        return members_text(obj, members, hexadecimal)
    except drgn.FaultError as exc:
        raise CommandError(f"invalid kernel virtual address: {exc.address:x}") from None
