"""ELF notes found in dumps: NT_PRSTATUS, VMCOREINFO and QEMU's notes.

The notes of a dump are the PT_NOTE segment of /proc/vmcore, copied verbatim
into kdump-compressed files.  Each note is ``u32 namesz, u32 descsz, u32 type``
followed by the name and the descriptor, each padded to 4 bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from kdumpkit.dump.errors import DumpFormatError

NT_PRSTATUS = 1
NT_PRPSINFO = 3
NT_TASKSTRUCT = 4
NT_VMCOREDD = 0x700

#: Register order of x86_64 ``struct user_regs_struct`` (``pr_reg`` in elf_prstatus).
X86_64_PR_REG_NAMES: tuple[str, ...] = (
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
    "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags",
    "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
)  # fmt: skip

#: Offset of pr_reg inside the x86_64 elf_prstatus descriptor, and its size.
X86_64_PRSTATUS_SIZE = 336
X86_64_PR_REG_OFFSET = 112
X86_64_PR_PID_OFFSET = 32

#: Register order of arm64 ``struct user_pt_regs`` (``pr_reg`` in elf_prstatus): x0-x30
#: (x29 the frame pointer, x30 the link register), sp, pc, pstate.
AARCH64_PR_REG_NAMES: tuple[str, ...] = (
    *(f"x{i}" for i in range(31)),
    "sp",
    "pc",
    "pstate",
)
#: The arm64 elf_prstatus descriptor's size (pr_reg at the same offset as on x86_64).
AARCH64_PRSTATUS_SIZE = 392
#: pr_reg's names by the ELF machine name (``DumpHeader.machine``).
PR_REG_NAMES: dict[str, tuple[str, ...]] = {
    "x86_64": X86_64_PR_REG_NAMES,
    "aarch64": AARCH64_PR_REG_NAMES,
}
#: elf_prstatus descriptor sizes by machine.
PRSTATUS_SIZES: dict[str, int] = {"x86_64": X86_64_PRSTATUS_SIZE, "aarch64": AARCH64_PRSTATUS_SIZE}

_NHDR = struct.Struct("<III")
#: Bound on the notes we parse: a real dump has one NT_PRSTATUS per CPU plus a handful.
MAX_NOTES = 1 << 16


@dataclass(frozen=True)
class Note:
    """One ELF note: its name (without NUL), type and descriptor bytes."""

    name: str
    type: int
    desc: bytes
    #: Offset of the descriptor inside the note segment it came from.
    desc_offset: int = 0


@dataclass(frozen=True)
class PrStatus:
    """A CPU's saved state at the crash (x86_64 or arm64 NT_PRSTATUS)."""

    cpu: int
    pid: int
    registers: dict[str, int] = field(default_factory=dict)
    raw: bytes = b""


def parse_notes(data: bytes, *, little_endian: bool = True) -> list[Note]:
    """Parse a PT_NOTE segment.  Stops at an all-zero header (the kernel pads with one)."""
    hdr = _NHDR if little_endian else struct.Struct(">III")
    notes: list[Note] = []
    pos = 0
    end = len(data)
    while pos + hdr.size <= end:
        namesz, descsz, ntype = hdr.unpack_from(data, pos)
        if namesz == 0 and descsz == 0 and ntype == 0:
            break
        name_start = pos + hdr.size
        desc_start = name_start + _align4(namesz)
        desc_end = desc_start + descsz
        if desc_end > end:
            raise DumpFormatError(
                f"note at offset {pos} runs past the end of the notes "
                f"(name {namesz} bytes, descriptor {descsz} bytes, {end - pos} left)"
            )
        name = data[name_start : name_start + namesz].split(b"\0", 1)[0]
        notes.append(
            Note(name.decode("latin-1"), ntype, bytes(data[desc_start:desc_end]), desc_start)
        )
        if len(notes) > MAX_NOTES:
            raise DumpFormatError(f"more than {MAX_NOTES} notes")
        pos = desc_start + _align4(descsz)
    return notes


def _align4(n: int) -> int:
    return (n + 3) & ~3


def pack_note(name: str, note_type: int, desc: bytes) -> bytes:
    """One little-endian ELF note: header, NUL-terminated name and descriptor, each
    padded to 4 bytes."""
    raw_name = name.encode("latin-1") + b"\0"
    return (
        _NHDR.pack(len(raw_name), len(desc), note_type)
        + raw_name.ljust(_align4(len(raw_name)), b"\0")
        + desc.ljust(_align4(len(desc)), b"\0")
    )


def encode_notes(notes: list[Note]) -> tuple[list[Note], bytes]:
    """A PT_NOTE segment holding ``notes``, and the notes with their descriptor offsets
    in it."""
    out: list[Note] = []
    data = bytearray()
    for note in notes:
        packed = pack_note(note.name, note.type, note.desc)
        desc_offset = len(data) + _NHDR.size + _align4(len(note.name.encode("latin-1")) + 1)
        out.append(Note(note.name, note.type, note.desc, desc_offset))
        data += packed
    return out, bytes(data)


def decode_prstatus(note: Note, cpu: int, machine: str | None = None) -> PrStatus:
    """Decode an NT_PRSTATUS note of an x86_64 or arm64 kernel (``machine``, else told by
    the descriptor's size); other layouts keep only the raw bytes."""
    desc = note.desc
    if machine is None:
        machine = next((m for m, size in PRSTATUS_SIZES.items() if size == len(desc)), "x86_64")
    names = PR_REG_NAMES.get(machine)
    if names is None or len(desc) < PRSTATUS_SIZES[machine]:
        return PrStatus(cpu=cpu, pid=-1, raw=desc)
    (pid,) = struct.unpack_from("<i", desc, X86_64_PR_PID_OFFSET)
    values = struct.unpack_from(f"<{len(names)}Q", desc, X86_64_PR_REG_OFFSET)
    return PrStatus(cpu=cpu, pid=pid, registers=dict(zip(names, values, strict=True)), raw=desc)


def prstatus_notes(notes: list[Note], machine: str | None = None) -> list[PrStatus]:
    """The NT_PRSTATUS notes of the kernel ("CORE"), numbered in order as CPUs."""
    out: list[PrStatus] = []
    for note in notes:
        if note.type == NT_PRSTATUS and note.name == "CORE":
            out.append(decode_prstatus(note, len(out), machine))
    return out


def find_vmcoreinfo_note(notes: list[Note]) -> Note | None:
    """The VMCOREINFO note, if the dump has one."""
    for note in notes:
        if note.name == "VMCOREINFO":
            return note
    return None
