"""Kernel facts that need VMCOREINFO and memory, but no type information."""

from __future__ import annotations

from kdumpkit.dump.base import Dump
from kdumpkit.dump.errors import DumpError
from kdumpkit.kernel.arch import address_space

#: struct new_utsname: six char[__NEW_UTS_LEN + 1] fields, in this order.
UTSNAME_FIELDS = ("sysname", "nodename", "release", "version", "machine", "domainname")
UTS_FIELD_LEN = 65
#: Where to look for "Linux\0" when VMCOREINFO has no OFFSET(uts_namespace.name).
_UTS_NAME_SEARCH = 64


def utsname(dump: Dump) -> dict[str, str]:
    """``init_uts_ns.name`` of the crashed kernel: sysname, nodename, release, version, ...

    Uses ``SYMBOL(init_uts_ns)`` and ``OFFSET(uts_namespace.name)``; kernels that
    do not export the offset get it by finding ``"Linux\\0"`` near the symbol.
    """
    info = dump.vmcoreinfo
    address = info.symbol("init_uts_ns") if info else None
    if info is None or address is None:
        raise DumpError(f"{dump.name}: VMCOREINFO has no SYMBOL(init_uts_ns): no utsname")
    space = address_space(dump)
    offset = info.offset("uts_namespace.name")
    if offset is None:
        head = space.read(address, _UTS_NAME_SEARCH + 6)
        offset = head.find(b"Linux\0")
        if offset < 0:
            raise DumpError(f"{dump.name}: init_uts_ns at {address:#x} does not hold a utsname")
    raw = space.read(address + offset, UTS_FIELD_LEN * len(UTSNAME_FIELDS))
    fields = {}
    for i, name in enumerate(UTSNAME_FIELDS):
        value = raw[i * UTS_FIELD_LEN : (i + 1) * UTS_FIELD_LEN].split(b"\0", 1)[0]
        fields[name] = value.decode("utf-8", "replace")
    return fields
