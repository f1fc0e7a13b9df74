"""Errors raised by the dump layer."""

from __future__ import annotations

from kdumpkit.errors import KdumpkitError


class DumpError(KdumpkitError):
    """Base class of every error the dump layer raises."""


class DumpFormatError(DumpError):
    """The input is not a dump we can read, or is truncated or corrupt.

    The message is one line that names the file and what is wrong.
    """


class PageNotPresentError(DumpError):
    """A physical page is not in the dump.

    ``reason`` is ``"excluded"`` (filtered out when the dump was written),
    ``"hole"`` (not RAM in the dumped machine, or beyond the dump's range) or
    ``"lost"`` (the dump is incomplete and this page was never written).
    """

    def __init__(self, pfn: int, reason: str, address: int | None = None) -> None:
        self.pfn = pfn
        self.reason = reason
        self.address = address
        where = f"address {address:#x} (pfn {pfn:#x})" if address is not None else f"pfn {pfn:#x}"
        super().__init__(f"page not in dump: {where} is {reason}")
