"""``crashkernel=``: parse it as the kernel does, produce it, and pick the size for a RAM size.

Forms (Documentation/admin-guide/kernel-parameters.txt, kernel/crash_core.c):

- ``crashkernel=size[KMG][@offset]``
- ``crashkernel=start-[end]:size[,start-[end]:size...][@offset]``: the size of the
  first range holding the System RAM total; *end* is exclusive, an open end is ``start-``
- ``crashkernel=size,high`` / ``size,low`` / ``size,cma``: placement variants; a plain
  ``crashkernel=X`` wins over ``,high`` when both are given.

When the option is repeated the kernel uses the last one of each kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kdumpkit.service.cmdline import split_cmdline
from kdumpkit.service.errors import CrashkernelError

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
_UNITS = {"K": KiB, "M": MiB, "G": GiB, "T": TiB, "P": 1 << 50, "E": 1 << 60}
SUFFIXES = ("high", "low", "cma")


def memparse(text: str) -> tuple[int, str]:
    """Parse a leading ``number[KMGTPE]`` like the kernel's memparse(); return it and the rest.

    The number is read with base 0, as simple_strtoull does: ``0x`` is hex, a leading
    ``0`` octal.
    """
    match = re.match(r"(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)([KMGTPEkmgtpe]?)", text)
    if not match:
        raise CrashkernelError(f"crashkernel: expected a size at {text[:20]!r}")
    digits, unit = match.groups()
    if digits[:2].lower() == "0x":
        base = 16
    else:
        base = 8 if digits.startswith("0") and digits != "0" else 10
    value = int(digits, base) * _UNITS.get(unit.upper(), 1)
    return value, text[match.end() :]


def format_size(size: int) -> str:
    """A size in the largest unit that divides it exactly: 256M, 1G, 4096K, 17."""
    for unit in "TGMK":
        if size and size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return str(size)


@dataclass(frozen=True)
class MemRange:
    """One ``start-end:size`` entry: reserve *size* when start <= RAM < end."""

    start: int
    end: int | None
    size: int

    def __str__(self) -> str:
        end = format_size(self.end) if self.end is not None else ""
        return f"{format_size(self.start)}-{end}:{format_size(self.size)}"


@dataclass(frozen=True)
class Crashkernel:
    """A parsed ``crashkernel=`` value.  A plain size has one range and ``plain`` set."""

    ranges: tuple[MemRange, ...]
    plain: bool = False
    offset: int | None = None
    suffix: str | None = None

    def size_for(self, system_ram: int) -> int:
        """Bytes the kernel reserves on a machine with *system_ram* (0: no range matches)."""
        if self.plain:
            return self.ranges[0].size
        for entry in self.ranges:
            if system_ram >= entry.start and (entry.end is None or system_ram < entry.end):
                # parse_crashkernel_mem() refuses a size not below the RAM size
                return entry.size if entry.size < system_ram else 0
        return 0

    def __str__(self) -> str:
        text = (
            format_size(self.ranges[0].size)
            if self.plain
            else ",".join(str(entry) for entry in self.ranges)
        )
        if self.suffix:
            text += f",{self.suffix}"
        if self.offset is not None:
            text += f"@{format_size(self.offset)}"
        return text


def parse_crashkernel(value: str) -> Crashkernel:
    """Parse the value of one ``crashkernel=`` option; CrashkernelError if the kernel would not."""
    text = value.strip()
    if text.startswith("crashkernel="):
        text = text[len("crashkernel=") :]
    if not text:
        raise CrashkernelError("crashkernel= has no value")
    if text == "auto":
        raise CrashkernelError(
            "crashkernel=auto is a RHEL 8 extension that upstream kernels "
            "ignore; use a size or ranges (kdumpkit estimate)"
        )
    offset = None
    if "@" in text:
        text, _, offset_text = text.rpartition("@")
        offset, rest = memparse(offset_text)
        if rest:
            raise CrashkernelError(f"crashkernel={value}: junk after the offset: {rest!r}")
    suffix = None
    head, _, last = text.rpartition(",")
    if head and last in SUFFIXES:
        text, suffix = head, last
    elif text in SUFFIXES:
        raise CrashkernelError(f"crashkernel={value}: no size before ,{text}")
    if ":" not in text:
        size, rest = memparse(text)
        if rest:
            raise CrashkernelError(f"crashkernel={value}: unexpected {rest!r} after the size")
        return Crashkernel((MemRange(0, None, size),), plain=True, offset=offset, suffix=suffix)
    if suffix in ("low", "cma"):
        raise CrashkernelError(f"crashkernel={value}: ,{suffix} takes a plain size, not ranges")
    return Crashkernel(_parse_ranges(text, value), offset=offset, suffix=suffix)


def _parse_ranges(text: str, value: str) -> tuple[MemRange, ...]:
    ranges = []
    for item in text.split(","):
        start, rest = memparse(item)
        if not rest.startswith("-"):
            raise CrashkernelError(f"crashkernel={value}: '-' expected after {item.split('-')[0]}")
        rest = rest[1:]
        end = None
        if not rest.startswith(":"):
            end, rest = memparse(rest)
            if end <= start:
                raise CrashkernelError(f"crashkernel={value}: range {item}: end <= start")
        if not rest.startswith(":"):
            raise CrashkernelError(f"crashkernel={value}: ':' expected in {item!r}")
        size, rest = memparse(rest[1:])
        if rest:
            raise CrashkernelError(f"crashkernel={value}: unexpected {rest!r} in {item!r}")
        ranges.append(MemRange(start, end, size))
    return tuple(ranges)


def crashkernel_options(cmdline: str) -> list[str]:
    """The values of every ``crashkernel=`` on a kernel command line, in order."""
    return [
        token.partition("=")[2]
        for token in split_cmdline(cmdline)
        if token.partition("=")[0] == "crashkernel"
    ]


def effective_crashkernel(cmdline: str) -> Crashkernel | None:
    """The ``crashkernel=`` the kernel acts on for the main reservation, or None.

    The last option without a suffix wins (get_last_crashkernel); failing that the last
    ``,high`` one.  ``,low`` and ``,cma`` only add to a main reservation.
    """
    parsed = [parse_crashkernel(value) for value in crashkernel_options(cmdline)]
    for wanted in (None, "high"):
        chosen = [entry for entry in parsed if entry.suffix == wanted]
        if chosen:
            return chosen[-1]
    return None


def ranges_value(size_at: dict[int | None, int], floor: int) -> Crashkernel:
    """A range-form crashkernel= from sizes keyed by each range's exclusive end.

    *size_at* maps the end of each tier (None = open) to its size, in increasing
    order; the first tier starts at *floor*.  Adjacent tiers of equal size are merged.
    """
    ranges: list[MemRange] = []
    start = floor
    for end, size in size_at.items():
        if ranges and ranges[-1].size == size:
            ranges[-1] = MemRange(ranges[-1].start, end, size)
        else:
            ranges.append(MemRange(start, end, size))
        if end is not None:
            start = end
    return Crashkernel(tuple(ranges))
