"""Which dump format a file holds, from its first bytes."""

from __future__ import annotations

ELF_MAGIC = b"\x7fELF"
KDUMP_SIGNATURES = (b"KDUMP   ", b"DISKDUMP")
FLAT_SIGNATURE = b"makedumpfile\0\0\0\0"


def detect_format(head: bytes) -> str | None:
    """'elf', 'kdump' or 'flat' from a file's first 16 bytes, or None."""
    if head[:4] == ELF_MAGIC:
        return "elf"
    if head[:8] in KDUMP_SIGNATURES:
        return "kdump"
    if head[:16] == FLAT_SIGNATURE:
        return "flat"
    return None
