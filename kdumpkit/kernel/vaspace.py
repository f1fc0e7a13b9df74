"""What every architecture's kernel address space offers: reads by virtual address.

An architecture module (:mod:`kdumpkit.kernel.x86_64`, :mod:`kdumpkit.kernel.aarch64`)
subclasses :class:`KernelAddressSpace` and provides :meth:`~KernelAddressSpace.v2p`;
the reads across pages are the same everywhere.  :mod:`kdumpkit.kernel.arch` picks the
class for a dump.
"""

from __future__ import annotations

from kdumpkit.dump.base import Dump
from kdumpkit.dump.errors import DumpError


class TranslationError(DumpError):
    """A kernel virtual address has no translation (or its page tables are missing)."""

    def __init__(self, vaddr: int, reason: str) -> None:
        self.vaddr = vaddr
        self.reason = reason
        super().__init__(f"cannot translate virtual address {vaddr:#x}: {reason}")


class KernelAddressSpace:
    """Reads of kernel virtual memory over :meth:`v2p` (little-endian kernels)."""

    dump: Dump
    #: The translation granule: the kernel's page size.
    page_size: int = 4096

    def v2p(self, vaddr: int) -> int:
        """The physical address of kernel virtual address ``vaddr``."""
        raise NotImplementedError

    def read(self, vaddr: int, size: int, *, zero_missing: bool = False) -> bytes:
        """``size`` bytes at kernel virtual address ``vaddr``, across pages.

        With ``zero_missing``, pages that do not translate or are not in the dump
        read as zeros; otherwise they raise :class:`TranslationError` or
        :class:`~kdumpkit.dump.errors.PageNotPresentError`.
        """
        if size < 0:
            raise ValueError("negative size")
        if size == 0:
            return b""
        page_size = self.page_size
        # Physically contiguous runs are read with one call.
        runs: list[tuple[int | None, int]] = []
        addr, end = vaddr, vaddr + size
        while addr < end:
            chunk = min(page_size - (addr & (page_size - 1)), end - addr)
            try:
                paddr: int | None = self.v2p(addr)
            except TranslationError:
                if not zero_missing:
                    raise
                paddr = None
            if runs and paddr is not None and runs[-1][0] is not None:
                start, length = runs[-1]
                if start + length == paddr:  # type: ignore[operator]
                    runs[-1] = (start, length + chunk)
                    addr += chunk
                    continue
            runs.append((paddr, chunk))
            addr += chunk
        out = bytearray()
        for paddr, length in runs:
            if paddr is None:
                out += bytes(length)
            else:
                out += self.dump.read(paddr, length, zero_missing=zero_missing)
        return bytes(out)

    def read_u64(self, vaddr: int) -> int:
        """The little-endian u64 at ``vaddr``."""
        return int.from_bytes(self.read(vaddr, 8), "little")

    def read_u32(self, vaddr: int) -> int:
        """The little-endian u32 at ``vaddr``."""
        return int.from_bytes(self.read(vaddr, 4), "little")

    def read_u16(self, vaddr: int) -> int:
        """The little-endian u16 at ``vaddr``."""
        return int.from_bytes(self.read(vaddr, 2), "little")

    def read_cstring(self, vaddr: int, maxlen: int = 4096) -> bytes:
        """The NUL-terminated string at ``vaddr`` (without the NUL), at most ``maxlen`` bytes."""
        page_size = self.page_size
        out = bytearray()
        addr = vaddr
        while len(out) < maxlen:
            chunk = min(page_size - (addr & (page_size - 1)), maxlen - len(out))
            data = self.read(addr, chunk)
            nul = data.find(b"\0")
            if nul >= 0:
                out += data[:nul]
                break
            out += data
            addr += chunk
        return bytes(out)
