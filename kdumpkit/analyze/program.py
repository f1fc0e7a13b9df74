"""The one entry point of analysis: a dump (or the live kernel) as a ``drgn.Program``.

A dump of any format is read by :func:`kdumpkit.dump.open_dump`; drgn gets

* its notes (VMCOREINFO, one NT_PRSTATUS per CPU) through a tiny notes-only ELF
  core in a memfd, so that drgn knows the kernel, the crashed thread and each
  CPU's registers exactly as with ``/proc/vmcore``;
* physical memory through one segment whose reads go to our reader (pages
  missing from the dump raise ``drgn.FaultError``);
* types, symbols and globals from the dump itself (BTF, kallsyms), or from a
  vmlinux with DWARF when one is given.

``prog.cache["kdumpkit.dump"]`` holds the :class:`~kdumpkit.dump.base.Dump` and
``prog.cache["kdumpkit.debuginfo"]`` the :class:`~kdumpkit.debuginfo.loader.DebugInfo`.
"""

from __future__ import annotations

import contextlib
import gc
import os
import struct
import sys
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import drgn

import kdumpkit.numpy_setup  # noqa: F401  (before anything imports numpy)
from kdumpkit.analyze.guard import Damage, guard_drgn_lists, note_damage
from kdumpkit.debuginfo.loader import (
    load_dump_debuginfo,
    load_dwarf_companions,
    load_live_debuginfo,
)
from kdumpkit.debuginfo.symbols import (
    dump_scanned_symbols,
    load_elf_symtab,
    load_system_map,
)
from kdumpkit.dump.base import Dump
from kdumpkit.dump.errors import DumpError, DumpFormatError, PageNotPresentError
from kdumpkit.dump.notes import Note, encode_notes
from kdumpkit.dump.open import open_dump
from kdumpkit.dump.vmcoreinfo import VmcoreInfo
from kdumpkit.kernel.arch import machine_of

PathArg = str | os.PathLike[str]
LIVE_PATHS = ("/proc/kcore",)
#: Decompressed pages kept for drgn's many small reads (16 MiB of 4 KiB pages).
PAGE_CACHE_PAGES = 4096
#: Reads larger than this bypass the page cache.
BULK_READ_BYTES = 256 << 10
EM_X86_64 = 62
EM_AARCH64 = 183
#: The ELF machine of the notes core drgn reads, by the dump's machine.
ELF_MACHINES = {"x86_64": EM_X86_64, "aarch64": EM_AARCH64}
#: drgn's own plugins (drgn 0.3.0's dist-info): they only register drgn's commands
#: on import, which kdumpkit's drgn pass-through does itself when it needs them.
DRGN_OWN_PLUGINS = frozenset({"builtin_commands", "crash_commands"})
PLUGIN_GROUP = "[drgn.plugins]"
#: The VMCOREINFO keys whose value drgn 0.3.0 parses as a number when it opens a core
#: (libdrgn/drgn_program_parse_vmcoreinfo.inc.strswitch), with strtoull's base: one bad
#: value there fails the whole open, so they are checked first.
DRGN_NUMBER_KEYS: dict[str, int] = {
    "PAGESIZE": 0,
    "KERNELOFFSET": 16,
    "KERNELOFFPHYS": 16,
    "SYMBOL(swapper_pg_dir)": 16,
    "LENGTH(mem_section)": 0,
    "NUMBER(SECTION_SIZE_BITS)": 0,
    "NUMBER(MAX_PHYSMEM_BITS)": 0,
    "NUMBER(pgtable_l5_enabled)": 0,
    "NUMBER(kimage_voffset)": 0,
    "NUMBER(phys_base)": 0,
    "NUMBER(KERNELPACMASK)": 16,
    "NUMBER(VA_BITS)": 0,
    "NUMBER(TCR_EL1_T1SZ)": 0,
}
#: drgn keeps OSRELEASE in a 65-byte buffer (utsname's) and the build ID in 20 bytes.
OSRELEASE_MAX = 64
BUILD_ID_MAX_BYTES = 20
_HEX = frozenset(b"0123456789abcdefABCDEF")


class PhysicalMemory:
    """drgn's read callback over a Dump, with a small cache of recently read pages."""

    def __init__(self, dump: Dump) -> None:
        self.dump = dump
        self.page_size = dump.page_size
        self._cache: OrderedDict[int, bytes] = OrderedDict()

    def page(self, pfn: int) -> bytes:
        """Page ``pfn``'s bytes (cached); raises drgn.FaultError when not in the dump."""
        cache = self._cache
        data = cache.get(pfn)
        if data is not None:
            cache.move_to_end(pfn)
            return data
        data = self._read_page(pfn)
        cache[pfn] = data
        if len(cache) > PAGE_CACHE_PAGES:
            cache.popitem(last=False)
        return data

    def _read_page(self, pfn: int) -> bytes:
        try:
            return self.dump.read_page(pfn)
        except PageNotPresentError as exc:
            raise drgn.FaultError(
                f"page not in dump ({exc.reason})", pfn * self.page_size
            ) from None
        except DumpError as exc:
            raise drgn.FaultError(str(exc), pfn * self.page_size) from None

    def read(self, address: int, count: int, offset: int, physical: bool) -> bytes:
        """``add_memory_segment`` callback: ``count`` bytes of physical memory at ``address``."""
        page_size = self.page_size
        pfn, start = divmod(address, page_size)
        if start + count <= page_size:
            data = self.page(pfn)
            return data[start : start + count]
        # A bulk read (kallsyms, BTF: megabytes read once) does not fill the cache,
        # which is for the structures and stacks that drgn and the unwinder re-read.
        bulk = count > BULK_READ_BYTES
        parts = []
        end = address + count
        while address < end:
            pfn, start = divmod(address, page_size)
            chunk = min(page_size - start, end - address)
            try:
                if bulk:
                    data = self._cache.get(pfn) or self._read_page(pfn)
                else:
                    data = self.page(pfn)
            except drgn.FaultError as exc:
                raise drgn.FaultError(exc.message, address) from None
            parts.append(data[start : start + chunk])
            address += chunk
        return b"".join(parts)


def notes_core(note_data: bytes, machine: int = EM_X86_64) -> int:
    """A memfd holding an ELF64 core with one PT_NOTE (the dump's notes) and no memory."""
    ehdr = struct.pack(
        "<16sHHIQQQIHHHHHH",
        b"\x7fELF\x02\x01\x01" + bytes(9), 4, machine, 1, 0, 64, 0, 0, 64, 56, 1, 64, 0, 0,
    )  # fmt: skip
    phdr = struct.pack("<IIQQQQQQ", 4, 0, 64 + 56, 0, 0, len(note_data), 0, 4)
    fd = os.memfd_create("kdumpkit-notes", os.MFD_CLOEXEC)
    os.write(fd, ehdr + phdr + note_data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def third_party_drgn_plugins() -> set[str] | None:
    """The names of the ``drgn.plugins`` entry points other than drgn's own, found by
    reading each installed distribution's entry_points.txt; None when ``sys.path``
    holds something this quick look cannot read (a zip), so that drgn must look."""
    found: set[str] = set()
    for entry in sys.path:
        try:
            listing = os.scandir(entry or ".")
        except NotADirectoryError:
            return None
        except OSError:
            continue  # a missing directory holds no plugin
        with listing:
            for item in listing:
                if not item.name.endswith((".dist-info", ".egg-info")):
                    continue
                try:
                    with open(os.path.join(item.path, "entry_points.txt"), "rb") as file:
                        text = file.read().decode("utf-8", "replace")
                except NotADirectoryError:
                    return None  # an egg-info file: let drgn read it
                except OSError:
                    continue
                found |= drgn_plugin_names(text)
    return found - DRGN_OWN_PLUGINS


def drgn_plugin_names(entry_points_txt: str) -> set[str]:
    """The entry point names of the ``[drgn.plugins]`` section of an entry_points.txt."""
    names: set[str] = set()
    in_group = False
    for line in entry_points_txt.splitlines():
        line = line.strip()
        if line.startswith("["):
            in_group = line == PLUGIN_GROUP
        elif in_group and "=" in line:
            names.add(line.partition("=")[0].strip())
    return names


@contextlib.contextmanager
def drgn_plugin_scan_skipped() -> Iterator[None]:
    """Skip drgn's plugin loading while drgn sets a program up, when it would only import
    drgn's own command modules (~0.1 s: an importlib.metadata scan plus the imports).

    A user's own plugins (any other ``drgn.plugins`` entry point) and a user's
    ``DRGN_PLUGINS`` / ``DRGN_DISABLE_PLUGINS`` choice are left to drgn as they are.
    Otherwise ``DRGN_DISABLE_PLUGINS=*``, drgn's documented switch, is set for the
    call only, so that the shell commands that a session pipes to do not inherit it.
    """
    if (
        "DRGN_PLUGINS" in os.environ
        or "DRGN_DISABLE_PLUGINS" in os.environ
        or third_party_drgn_plugins() != set()
    ):
        yield
        return
    os.environ["DRGN_DISABLE_PLUGINS"] = "*"
    try:
        yield
    finally:
        os.environ.pop("DRGN_DISABLE_PLUGINS", None)


def strtoull(text: bytes, base: int) -> int | None:
    """C's ``strtoull`` over a whole value as drgn uses it: None where drgn would call the
    number invalid (no digits, anything after them) or too large."""
    text = text.lstrip(b" \t\n\v\f\r")
    negative = text[:1] == b"-"
    if text[:1] in (b"+", b"-"):
        text = text[1:]
    if base in (0, 16) and text[:2] in (b"0x", b"0X") and text[2:3] and text[2] in _HEX:
        text, base = text[2:], 16
    elif base == 0:
        base = 8 if text[:1] == b"0" else 10
    digits = b"0123456789abcdefABCDEF"[: base + max(0, base - 10)]
    if not text or any(char not in digits for char in text):
        return None
    value = int(text, base)
    if value >= 1 << 64:
        return None
    return (-value) % (1 << 64) if negative else value


def _vmcoreinfo_problem(key: str, value: bytes) -> str | None:
    """What is wrong with one VMCOREINFO line as drgn would parse it, or None."""
    if key == "BUILD-ID":
        if len(value) // 2 > BUILD_ID_MAX_BYTES or len(value) % 2 or set(value) - _HEX:
            return "not a build ID"
    elif key == "OSRELEASE":
        if not value or len(value) > OSRELEASE_MAX:
            return "not a kernel release"
    elif key in DRGN_NUMBER_KEYS:
        number = strtoull(value, DRGN_NUMBER_KEYS[key])
        if number is None:
            return "not a number"
        if key == "PAGESIZE" and (number < 512 or number & (number - 1)):
            return "not a page size"
        if (
            key in ("NUMBER(SECTION_SIZE_BITS)", "NUMBER(MAX_PHYSMEM_BITS)")
            and not 0 < number <= 64
        ):
            return "out of range"
        if key == "SYMBOL(swapper_pg_dir)" and number == 0:
            return "a null address"
    return None


def checked_vmcoreinfo(raw: bytes, dump: Dump) -> tuple[bytes, list[Damage]]:
    """VMCOREINFO as drgn can take it, and the damage found: a line holding a NUL byte or
    a value drgn cannot parse is dropped (drgn would refuse the whole dump for one bad
    BUILD-ID); a damaged OSRELEASE or PAGESIZE is replaced from the dump's header.
    A damaged ``SYMBOL(swapper_pg_dir)`` (no address can be translated without it) raises
    :class:`DumpFormatError` naming it."""
    damage: list[Damage] = []
    kept: list[bytes] = []
    seen: set[str] = set()
    for number, line in enumerate(raw.rstrip(b"\0").split(b"\n"), 1):
        key_bytes, equals, value = line.partition(b"=")
        key = key_bytes.decode("latin-1")
        if b"\0" in line:
            name = key if equals and key.isprintable() else f"line {number}"
            damage.append(Damage(f"VMCOREINFO {name}", "holds a NUL byte; line ignored"))
            continue
        if not equals:
            kept.append(line)
            continue
        problem = _vmcoreinfo_problem(key, value)
        if problem is not None:
            shown = value[:40].decode("latin-1")
            damage.append(Damage(f"VMCOREINFO {key}", f"{shown!r} is {problem}; line ignored"))
            continue
        seen.add(key)
        kept.append(line)
    while kept and not kept[-1]:
        kept.pop()
    if "OSRELEASE" not in seen:
        release = (dump.header.utsname.get("release") or "").encode("latin-1", "replace")
        if _vmcoreinfo_problem("OSRELEASE", release) is not None:
            release, source = b"unknown", "no release known"
        else:
            source = "the release from the dump header"
        kept.insert(0, b"OSRELEASE=" + release)
        _replaced(damage, "VMCOREINFO OSRELEASE", f"{source} used")
    if "PAGESIZE" not in seen:
        kept.append(b"PAGESIZE=%d" % dump.page_size)
        _replaced(damage, "VMCOREINFO PAGESIZE", f"the dump's page size {dump.page_size} used")
    if "SYMBOL(swapper_pg_dir)" not in seen:
        raise DumpFormatError(
            f"{dump.name}: VMCOREINFO SYMBOL(swapper_pg_dir) is missing or damaged: "
            "no kernel address can be translated"
        )
    return b"\n".join(kept) + b"\n", damage


def _replaced(damage: list[Damage], part: str, instead: str) -> None:
    """Note that ``part`` is missing or damaged and what replaced it (one note)."""
    for index, found in enumerate(damage):
        if found.part == part:
            damage[index] = Damage(part, found.detail.replace("line ignored", instead))
            return
    damage.append(Damage(part, f"missing; {instead}"))


def _checked_notes(dump: Dump) -> tuple[bytes, list[Damage]]:
    """The dump's notes for drgn, their VMCOREINFO checked (:func:`checked_vmcoreinfo`)."""
    assert dump.vmcoreinfo is not None
    notes = list(dump.notes)
    index = next((i for i, n in enumerate(notes) if n.name == "VMCOREINFO"), None)
    raw = notes[index].desc if index is not None else dump.vmcoreinfo.raw
    text, damage = checked_vmcoreinfo(raw, dump)
    if not damage and index is not None:
        return dump.note_data, damage
    note = Note("VMCOREINFO", 0, text)
    if index is None:
        notes.append(note)
    else:
        notes[index] = note
    dump.vmcoreinfo = VmcoreInfo.parse(text)
    return encode_notes(notes)[1], damage


def program_from_dump(dump: Dump) -> drgn.Program:
    """A drgn Program over an opened dump, without any debug information yet."""
    machine = machine_of(dump)
    if machine not in ELF_MACHINES:
        raise DumpFormatError(f"{dump.name}: {machine} dumps are not supported")
    if dump.vmcoreinfo is None:
        # QEMU's dump-guest-memory without a vmcoreinfo device, or a stripped core:
        # the kernel keeps its VMCOREINFO note in memory too.
        from kdumpkit.kernel.vmcoreinfo_scan import ensure_vmcoreinfo

        if not ensure_vmcoreinfo(dump):
            raise DumpFormatError(
                f"{dump.name}: no VMCOREINFO note, and none found in memory; "
                "cannot analyse the kernel"
            )
    prog = drgn.Program()
    # ensure_vmcoreinfo added the note it found to dump.notes, as writers want too.
    note_data, damage = _checked_notes(dump)
    for found in damage:
        note_damage(prog, found.part, found.detail)
    fd = notes_core(note_data, ELF_MACHINES[machine])
    try:
        with drgn_plugin_scan_skipped():
            prog.set_core_dump(fd)  # drgn owns the fd from here on, even when it fails
    except (ValueError, OSError, drgn.BadDataError, OverflowError) as exc:
        raise DumpFormatError(f"{dump.name}: drgn refused the dump's notes: {exc}") from None
    memory = PhysicalMemory(dump)
    prog.add_memory_segment(0, max(dump.max_pfn, 1) * dump.page_size, memory.read, physical=True)
    prog.cache["kdumpkit.dump"] = dump
    prog.cache["kdumpkit.memory"] = memory
    return prog


def load_vmlinux(prog: drgn.Program, vmlinux: PathArg) -> None:
    """DWARF from a vmlinux file, or from a debug directory (vmlinux and modules)."""
    path = os.fspath(vmlinux)
    try:
        if os.path.isdir(path):
            prog.debug_info_options.directories = (path, *prog.debug_info_options.directories)
            prog.load_debug_info(default=True)
        else:
            if not os.path.isfile(path):
                raise DumpFormatError(f"{path}: no such vmlinux")
            prog.load_debug_info([path], default=False, main=True)
    except drgn.MissingDebugInfoError as exc:
        # Modules' debug info is often absent; only a missing vmlinux is fatal.
        if prog.main_module().debug_file_path is None:
            raise DumpFormatError(f"{path}: no usable DWARF for the kernel: {exc}") from None


def debug_file_kind(path: PathArg) -> str:
    """What a --vmlinux argument holds: "dwarf" (a vmlinux with .debug_info, or a debug
    directory), "symtab" (an ELF without DWARF) or "system.map"."""
    name = os.fspath(path)
    if os.path.isdir(name):
        return "dwarf"
    try:
        with open(name, "rb") as file:
            head = file.read(4)
    except OSError as exc:
        raise DumpFormatError(f"{name}: cannot open: {exc.strerror}") from None
    if head != b"\x7fELF":
        return "system.map"
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with open(name, "rb") as file:
            has_dwarf = ELFFile(file).get_section_by_name(".debug_info") is not None
    except ELFError as exc:
        raise DumpFormatError(f"{name}: bad ELF file: {exc}") from None
    return "dwarf" if has_dwarf else "symtab"


def open_program(
    path_or_paths: PathArg | Sequence[PathArg] | None = None,
    vmlinux: PathArg | None = None,
    *,
    zero_excluded: bool = False,
) -> drgn.Program:
    """Open a dump (any format, or a split set) or the live kernel as a drgn Program.

    Without ``vmlinux``, types come from the kernel's BTF and symbols from kallsyms,
    both read from the dump.  ``vmlinux`` may be a vmlinux with DWARF or a debug
    directory (DWARF types), or, for kernels before 6.0 whose VMCOREINFO lacks
    kallsyms, a System.map or a stripped vmlinux (symbols; types still from BTF).

    ``zero_excluded`` (crash's ``--zero_excluded``) reads the pages that are RAM but not
    in the dump as zeros (``dump.zero_filled`` collects those read).  What the dump's
    content damages on the way is noted in ``prog.cache`` (:mod:`kdumpkit.analyze.guard`).
    """
    guard_drgn_lists()
    with garbage_collection_paused():
        return _open_program(path_or_paths, vmlinux, zero_excluded)


@contextlib.contextmanager
def garbage_collection_paused() -> Iterator[None]:
    """No garbage collection while a program is set up: it makes long-lived lists of ~100k
    items (kallsyms, BTF), which every young-generation collection would walk while they
    are young (~20 ms of an open), and no cyclic garbage worth collecting."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _open_program(
    path_or_paths: PathArg | Sequence[PathArg] | None,
    vmlinux: PathArg | None,
    zero_excluded: bool = False,
) -> drgn.Program:
    if path_or_paths is None or (
        isinstance(path_or_paths, (str, os.PathLike)) and os.fspath(path_or_paths) in LIVE_PATHS
    ):
        return _open_live(vmlinux)
    dump = open_dump(path_or_paths)  # type: ignore[arg-type]
    dump.zero_excluded = zero_excluded
    try:
        prog = program_from_dump(dump)
        assert dump.vmcoreinfo is not None
        kind = debug_file_kind(vmlinux) if vmlinux is not None else None
        if kind == "dwarf":
            assert vmlinux is not None
            load_vmlinux(prog, vmlinux)
            load_dwarf_companions(prog, dump.vmcoreinfo)
        elif kind is None:
            # Before 6.0: kallsyms found by scanning the image (None: VMCOREINFO has it).
            load_dump_debuginfo(prog, dump.vmcoreinfo, symbols=dump_scanned_symbols(dump))
        else:
            # Kernels before 6.0 have no kallsyms in VMCOREINFO: symbols from the file,
            # types still from the BTF in memory.
            assert vmlinux is not None
            kaslr = dump.vmcoreinfo.kerneloffset or 0
            load = load_system_map if kind == "system.map" else load_elf_symtab
            symbols = load(vmlinux, kaslr)
            load_dump_debuginfo(prog, dump.vmcoreinfo, symbols=symbols)
    except BaseException:
        dump.close()
        raise
    return prog


def _open_live(vmlinux: PathArg | None) -> drgn.Program:
    prog = drgn.Program()
    try:
        with drgn_plugin_scan_skipped():
            prog.set_kernel()
    except (PermissionError, OSError, ValueError) as exc:
        raise DumpFormatError(f"/proc/kcore: cannot open the live kernel: {exc}") from None
    prog.cache["kdumpkit.path"] = LIVE_PATHS[0]  # sys's DUMPFILE, as crash shows it live
    if vmlinux is not None:
        load_vmlinux(prog, vmlinux)
    else:
        load_live_debuginfo(prog)
    return prog
