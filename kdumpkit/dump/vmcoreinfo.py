"""VMCOREINFO: the ``KEY=value`` text the kernel leaves for dump tools.

Keys are typed by their form: ``SYMBOL(name)`` and ``KERNELOFFSET`` are hex,
``OFFSET``/``SIZE``/``LENGTH`` are unsigned decimal, ``NUMBER`` is signed
decimal (``NUMBER(VMALLOC_START)`` is written in hex with a ``0x`` prefix),
``CRASHTIME`` is a decimal time_t.  The raw text is kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from kdumpkit.dump.errors import DumpFormatError

#: VMCOREINFO is at most a page; anything much longer is not VMCOREINFO.
MAX_VMCOREINFO_BYTES = 1 << 16


def _parse_int(text: str, base: int) -> int:
    text = text.strip()
    if text.lower().startswith(("0x", "-0x")):
        return int(text, 16)
    return int(text, base)


@dataclass(frozen=True)
class VmcoreInfo(Mapping[str, str]):
    """Parsed VMCOREINFO.  As a mapping it gives the raw values by full key."""

    raw: bytes
    entries: dict[str, str]

    @classmethod
    def parse(cls, raw: bytes) -> VmcoreInfo:
        if len(raw) > MAX_VMCOREINFO_BYTES:
            raise DumpFormatError(f"VMCOREINFO is {len(raw)} bytes, more than a page")
        raw = raw.split(b"\0", 1)[0]
        entries: dict[str, str] = {}
        for line in raw.decode("latin-1").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                entries[key] = value
        return cls(raw, entries)

    def __getitem__(self, key: str) -> str:
        return self.entries[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def text(self) -> str:
        return self.raw.decode("latin-1")

    def _get(self, key: str, base: int) -> int | None:
        value = self.entries.get(key)
        if value is None:
            return None
        try:
            return _parse_int(value, base)
        except ValueError:
            raise DumpFormatError(f"VMCOREINFO {key}={value!r} is not a number") from None

    def symbol(self, name: str) -> int | None:
        """``SYMBOL(name)``: a kernel virtual address (hex)."""
        return self._get(f"SYMBOL({name})", 16)

    def offset(self, name: str) -> int | None:
        """``OFFSET(struct.member)``."""
        return self._get(f"OFFSET({name})", 10)

    def size(self, name: str) -> int | None:
        """``SIZE(name)``."""
        return self._get(f"SIZE({name})", 10)

    def length(self, name: str) -> int | None:
        """``LENGTH(name)``."""
        return self._get(f"LENGTH({name})", 10)

    def number(self, name: str) -> int | None:
        """``NUMBER(name)``: signed decimal, or hex with 0x."""
        return self._get(f"NUMBER({name})", 10)

    @property
    def osrelease(self) -> str | None:
        return self.entries.get("OSRELEASE")

    @property
    def build_id(self) -> str | None:
        return self.entries.get("BUILD-ID")

    @property
    def page_size(self) -> int | None:
        return self._get("PAGESIZE", 10)

    @property
    def kerneloffset(self) -> int | None:
        """KASLR offset of the kernel text (``KERNELOFFSET``, hex)."""
        return self._get("KERNELOFFSET", 16)

    @property
    def crashtime(self) -> int | None:
        return self._get("CRASHTIME", 10)

    @property
    def phys_base(self) -> int | None:
        return self.number("phys_base")

    def typed(self) -> dict[str, int | str]:
        """Every key with its value typed by the key's form (for JSON output)."""
        out: dict[str, int | str] = {}
        for key, value in self.entries.items():
            base = 16 if key.startswith("SYMBOL(") or key == "KERNELOFFSET" else 10
            if key.startswith(("SYMBOL(", "OFFSET(", "SIZE(", "LENGTH(", "NUMBER(")) or key in (
                "KERNELOFFSET", "CRASHTIME", "PAGESIZE",
            ):  # fmt: skip
                try:
                    out[key] = _parse_int(value, base)
                    continue
                except ValueError:
                    pass
            out[key] = value
        return out
