"""VMCOREINFO recovered from the physical memory of a dump that carries no such note.

A hypervisor dump (QEMU ``dump-guest-memory`` without ``-device vmcoreinfo`` or
without the guest's ``qemu_fw_cfg`` driver) has no VMCOREINFO note, but the kernel
built one at boot (``crash_save_vmcoreinfo_init``) and it is still in memory:

* ``vmcoreinfo_note``: an ELF note ``namesz=11, descsz, type=0, "VMCOREINFO\\0"``
  followed by the text, which starts ``OSRELEASE=``.  Since Linux 4.13 ("kexec:
  move vmcoreinfo out of the kernel's .bss section") it comes from
  ``alloc_pages_exact``, so it is page-aligned; before, it was a ``.bss`` array;
* ``vmcoreinfo_data``: the bare text, at the start of a zeroed page.

Copies of the note also turn up elsewhere (unaligned, stale or from another boot),
so the scan prefers page-aligned notes and checks each candidate against memory:
its ``SYMBOL(init_uts_ns)`` (a runtime, KASLR-relocated address) read through the
kernel text map with its own ``NUMBER(phys_base)`` must hold its ``OSRELEASE``.

The note found this way was written at boot: it has no ``CRASHTIME`` unless a
kdump kernel was armed and ran ``crash_save_vmcoreinfo``, but every symbol,
``KERNELOFFSET`` and ``phys_base`` in it is right for the boot that crashed.

Callers run :func:`ensure_vmcoreinfo` right after ``open_dump`` and before anything
that reads ``dump.vmcoreinfo``.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from kdumpkit.dump.base import Dump
from kdumpkit.dump.elf import ElfDump
from kdumpkit.dump.errors import DumpError, DumpFormatError
from kdumpkit.dump.notes import Note, encode_notes
from kdumpkit.dump.source import FileSource
from kdumpkit.dump.vmcoreinfo import MAX_VMCOREINFO_BYTES, VmcoreInfo
from kdumpkit.kernel.x86_64_layout import START_KERNEL_MAP

#: The note header fields before the name: namesz (len("VMCOREINFO") + 1), descsz, type.
VMCOREINFO_NOTE_NAME = "VMCOREINFO"
NOTE_NAMESZ = len(VMCOREINFO_NOTE_NAME) + 1
NOTE_TYPE = 0
#: Bytes 12.. of the note: the name padded to 4 bytes, then the first key of the text.
NOTE_NAME_AND_TEXT = b"VMCOREINFO\0\0OSRELEASE="
NOTE_NAME_OFFSET = 12
NOTE_DESC_OFFSET = 24
TEXT_START = b"OSRELEASE="
#: Bytes of memory read at a time.
CHUNK_BYTES = 16 << 20
#: Default bound on a scan, in seconds (a 1 GiB ELF dump takes about one).
DEFAULT_TIME_LIMIT = 120.0
UTS_FIELD_LEN = 65
#: struct new_utsname: sysname, nodename, release, ...: release is the third field.
UTS_RELEASE_INDEX = 2
#: Where "Linux\0" is looked for when VMCOREINFO has no OFFSET(uts_namespace.name).
_UTS_NAME_SEARCH = 64
#: Keys every kernel since 2.6.24 writes; a text without them is not VMCOREINFO.
_REQUIRED_KEYS = ("OSRELEASE", "PAGESIZE")


class VmcoreinfoScanError(DumpError):
    """The scan of physical memory for VMCOREINFO could not finish."""


@dataclass(frozen=True)
class VmcoreinfoCandidate:
    """A VMCOREINFO text found in physical memory."""

    #: Physical address of the note header (kind "note") or of the text (kind "text").
    paddr: int
    #: "note" (the ELF note vmcoreinfo_note) or "text" (the bare vmcoreinfo_data page).
    kind: str
    page_aligned: bool
    raw: bytes
    #: True: init_uts_ns holds its OSRELEASE; False: it holds another release
    #: (a note from another boot); None: that memory is not in the dump.
    verified: bool | None

    @property
    def rank(self) -> tuple[int, int, int]:
        """Sort key, best first: verified, then notes, then page-aligned."""
        verified = {True: 0, None: 1, False: 2}[self.verified]
        return verified, 0 if self.kind == "note" else 1, 0 if self.page_aligned else 1


def find_vmcoreinfo(dump: Dump, *, time_limit: float | None = DEFAULT_TIME_LIMIT) -> bytes | None:
    """The VMCOREINFO text of the crashed kernel, found in ``dump``'s physical memory.

    None when memory holds no VMCOREINFO that fits this boot.  Raises
    :class:`VmcoreinfoScanError` when the scan takes longer than ``time_limit`` seconds.
    """
    found = locate_vmcoreinfo(dump, time_limit=time_limit)
    return found.raw if found else None


def locate_vmcoreinfo(
    dump: Dump, *, time_limit: float | None = DEFAULT_TIME_LIMIT
) -> VmcoreinfoCandidate | None:
    """The best VMCOREINFO candidate in physical memory, with where it was found.

    The first pass looks only at the start of each page, in increasing address
    order, and stops at the first page-aligned note that matches memory.  Only if
    none does, a second pass searches every byte for unaligned notes (Linux < 4.13
    kept the note in .bss).  Candidates are ranked at the end (see ``rank``).
    """
    clock = _Clock(dump.name, time_limit)
    best: VmcoreinfoCandidate | None = None
    for kind, paddr in _aligned_hits(dump, clock):
        candidate = _candidate(dump, kind, paddr)
        if candidate is not None and candidate.verified and kind == "note":
            return candidate
        best = _better(best, candidate)
    if best is None or not best.verified:
        page_size = dump.page_size
        for paddr in _unaligned_note_hits(dump, clock):
            if paddr % page_size:  # page-aligned ones were judged in the first pass
                best = _better(best, _candidate(dump, "note", paddr))
    return best


def _better(
    best: VmcoreinfoCandidate | None, candidate: VmcoreinfoCandidate | None
) -> VmcoreinfoCandidate | None:
    """The better of two candidates (only one is kept, however many memory holds);
    a candidate from another boot (``verified`` False) is never taken."""
    if candidate is None or candidate.verified is False:
        return best
    if best is None or (candidate.rank, candidate.paddr) < (best.rank, best.paddr):
        return candidate
    return best


def ensure_vmcoreinfo(dump: Dump, *, time_limit: float | None = DEFAULT_TIME_LIMIT) -> bool:
    """Give ``dump`` a VMCOREINFO if it has none, from a scan of its memory.

    True when ``dump.vmcoreinfo`` is set afterwards.  A VMCOREINFO note is then
    also appended to ``dump.notes`` and ``dump.note_data``, and the physical address
    it came from is recorded as ``dump.header.extra["vmcoreinfo_paddr"]``.
    """
    if dump.vmcoreinfo is not None:
        return True
    found = locate_vmcoreinfo(dump, time_limit=time_limit)
    if found is None:
        return False
    dump.vmcoreinfo = VmcoreInfo.parse(found.raw)
    # The note joins the dump's notes too: drgn (fed the notes) and every writer
    # (which copies note_data) then see a dump that carries VMCOREINFO.
    dump.notes, dump.note_data = with_vmcoreinfo_note(dump.notes, found.raw)
    dump.header.extra["vmcoreinfo_paddr"] = found.paddr
    dump.header.extra["vmcoreinfo_source"] = f"memory ({found.kind})"
    return True


def with_vmcoreinfo_note(notes: list[Note], vmcoreinfo: bytes) -> tuple[list[Note], bytes]:
    """``notes`` plus a VMCOREINFO note, and the PT_NOTE segment that encodes them all."""
    return encode_notes([*notes, Note(VMCOREINFO_NOTE_NAME, NOTE_TYPE, vmcoreinfo)])


def _align4(n: int) -> int:
    return (n + 3) & ~3


# --- reading memory ---------------------------------------------------------------------


class _Clock:
    """The scan's time bound: :meth:`tick` raises once it is spent."""

    def __init__(self, name: str, limit: float | None) -> None:
        self.name = name
        self.limit = limit
        self.deadline = None if limit is None else time.monotonic() + limit
        self.scanned = 0

    def tick(self, nbytes: int) -> None:
        self.scanned += nbytes
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise VmcoreinfoScanError(
                f"{self.name}: no VMCOREINFO found after scanning {self.scanned >> 20} MiB "
                f"of memory in {self.limit:g} s; giving up"
            )


def _aligned_hits(dump: Dump, clock: _Clock) -> Iterator[tuple[str, int]]:
    """``(kind, paddr)`` of pages that start with a VMCOREINFO note or bare text."""
    page_size = dump.page_size
    name_end = NOTE_NAME_OFFSET + len(NOTE_NAME_AND_TEXT)
    if isinstance(dump, ElfDump):
        # Whole chunks from the file, the start of every page compared at once.
        name = np.frombuffer(NOTE_NAME_AND_TEXT, dtype=np.uint8)
        text = np.frombuffer(TEXT_START, dtype=np.uint8)
        for base, data in _elf_chunks(dump, CHUNK_BYTES):
            whole = len(data) - len(data) % page_size
            rows = np.frombuffer(data, dtype=np.uint8, count=whole).reshape(-1, page_size)
            is_note = (rows[:, NOTE_NAME_OFFSET:name_end] == name).all(axis=1)
            is_text = (rows[:, : len(TEXT_START)] == text).all(axis=1)
            for index in np.flatnonzero(is_note).tolist():
                yield "note", base + index * page_size
            for index in np.flatnonzero(is_text).tolist():
                yield "text", base + index * page_size
            clock.tick(len(data))
        return
    for count, (pfn, page) in enumerate(dump.iter_pages(), 1):
        if page[NOTE_NAME_OFFSET:name_end] == NOTE_NAME_AND_TEXT:
            yield "note", pfn * page_size
        elif page[: len(TEXT_START)] == TEXT_START:
            yield "text", pfn * page_size
        if count % 4096 == 0:
            clock.tick(4096 * page_size)


def _unaligned_note_hits(dump: Dump, clock: _Clock) -> Iterator[int]:
    """Physical addresses of notes anywhere in memory, across chunk boundaries too."""
    prev_end, tail = -1, b""
    for base, data in _memory_chunks(dump, CHUNK_BYTES):
        if base == prev_end:  # a note may straddle the boundary with the previous chunk
            yield from _straddling_hits(
                prev_end - len(tail), tail + data[: len(NOTE_NAME_AND_TEXT)]
            )
        prev_end, tail = base + len(data), data[-len(NOTE_NAME_AND_TEXT) :]
        pos = data.find(NOTE_NAME_AND_TEXT, NOTE_NAME_OFFSET)
        while pos >= 0:
            yield base + pos - NOTE_NAME_OFFSET
            pos = data.find(NOTE_NAME_AND_TEXT, pos + 1)
        clock.tick(len(data))


def _memory_chunks(dump: Dump, chunk_bytes: int) -> Iterator[tuple[int, bytes]]:
    """``(paddr, bytes)`` pieces of present memory, page-aligned, in address order."""
    if isinstance(dump, ElfDump):
        yield from _elf_chunks(dump, chunk_bytes)
        return
    page_size = dump.page_size
    pages_per_chunk = max(1, chunk_bytes // page_size)
    run_start = -1
    pages: list[bytes] = []
    for pfn, page in dump.iter_pages():
        if pages and (pfn != run_start + len(pages) or len(pages) >= pages_per_chunk):
            yield run_start * page_size, b"".join(pages)
            pages = []
        if not pages:
            run_start = pfn
        pages.append(page)
    if pages:
        yield run_start * page_size, b"".join(pages)


def _elf_chunks(dump: ElfDump, chunk_bytes: int) -> Iterator[tuple[int, bytes]]:
    # Straight from the file, segment by segment: no per-page work.  The kernel-text
    # PT_LOAD of /proc/vmcore repeats RAM that another segment has (a repeated hit
    # is a repeated candidate, harmless).
    page_size = dump.page_size
    with _plain_reader(dump) as pread:
        for seg in sorted(dump.segments, key=lambda s: s.paddr):
            available = min(seg.filesz, max(0, dump.source.size - seg.offset))
            pos = -seg.paddr % page_size  # start at a page boundary
            while pos < available:
                size = min(chunk_bytes, available - pos)
                yield seg.paddr + pos, pread(seg.offset + pos, size)
                pos += size


@contextlib.contextmanager
def _plain_reader(dump: ElfDump) -> Iterator[Callable[[int, int], bytes]]:
    """``pread(offset, size)`` on the dump file through its own descriptor: reading a
    whole file through the source's memory map would leave all of it mapped into
    this process (a 1 GiB resident set for a 1 GiB dump)."""
    fd = -1
    if isinstance(dump.source, FileSource):
        try:
            fd = os.open(dump.source.name, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            fd = -1
    if fd < 0:
        yield dump.source.pread
        return

    def pread(offset: int, size: int) -> bytes:
        data = os.pread(fd, size, offset)
        if len(data) != size:
            raise DumpFormatError(f"{dump.name}: short read at {offset:#x}")
        return data

    try:
        yield pread
    finally:
        os.close(fd)


# --- checking candidates ----------------------------------------------------------------


def _straddling_hits(base: int, joint: bytes) -> list[int]:
    """A note whose name starts in the last bytes of one chunk (``joint`` is that tail
    followed by the next chunk's head, at physical ``base``)."""
    pos = joint.find(NOTE_NAME_AND_TEXT)
    return [base + pos - NOTE_NAME_OFFSET] if pos >= 0 else []


def _candidate(dump: Dump, kind: str, paddr: int) -> VmcoreinfoCandidate | None:
    """The candidate at ``paddr`` if it holds a well-formed VMCOREINFO, else None."""
    try:
        if kind == "note":
            namesz, descsz, ntype = struct.unpack(
                "<III", dump.read(paddr, NOTE_NAME_OFFSET, zero_missing=True)
            )
            if namesz != NOTE_NAMESZ or ntype != NOTE_TYPE or descsz > MAX_VMCOREINFO_BYTES:
                return None
            raw = dump.read(paddr + NOTE_DESC_OFFSET, descsz, zero_missing=True)
        else:
            raw = dump.read(paddr, dump.page_size, zero_missing=True)
    except DumpFormatError:
        return None
    raw = raw.split(b"\0", 1)[0]
    if not _looks_like_vmcoreinfo(raw):
        return None
    info = VmcoreInfo.parse(raw)
    return VmcoreinfoCandidate(
        paddr=paddr,
        kind=kind,
        page_aligned=paddr % dump.page_size == 0,
        raw=raw,
        verified=_release_matches(dump, info),
    )


def _looks_like_vmcoreinfo(raw: bytes) -> bool:
    """Printable ``KEY=value`` lines with the keys every kernel writes."""
    if not raw.endswith(b"\n") or not raw.isascii():
        return False
    lines = raw.split(b"\n")[:-1]
    if any(b"=" not in line for line in lines):
        return False
    keys = {line.split(b"=", 1)[0].decode() for line in lines}
    return all(key in keys for key in _REQUIRED_KEYS)


def _release_matches(dump: Dump, info: VmcoreInfo) -> bool | None:
    """Whether ``init_uts_ns`` (found through ``info`` itself) holds ``info``'s OSRELEASE."""
    symbol = info.symbol("init_uts_ns")
    phys_base = info.phys_base
    release = info.osrelease
    if symbol is None or phys_base is None or not release or symbol < START_KERNEL_MAP:
        return None
    paddr = symbol - START_KERNEL_MAP + phys_base
    offset = info.offset("uts_namespace.name")
    try:
        if offset is None:  # uts_namespace.name is exported since Linux 5.x; else find "Linux"
            head = dump.read(paddr, _UTS_NAME_SEARCH + 6)
            offset = head.find(b"Linux\0")
            if offset < 0:
                return False
        field = dump.read(paddr + offset + UTS_RELEASE_INDEX * UTS_FIELD_LEN, UTS_FIELD_LEN)
    except (DumpError, ValueError):
        return None
    return field.split(b"\0", 1)[0] == release.encode("latin-1")


def open_kernel_dump(path: str | os.PathLike[str] | list[str]) -> Dump:
    """:func:`kdumpkit.dump.open_dump`, then VMCOREINFO from memory if the dump has no note.

    The entry point for every verb that interprets the dumped kernel (its log, its
    pages, its header facts): hypervisor dumps then work like kdump's own.
    """
    from kdumpkit.dump.open import open_dump

    dump = open_dump(path)
    try:
        ensure_vmcoreinfo(dump)
    except BaseException:
        dump.close()
        raise
    return dump
