"""VMCOREINFO recovered from physical memory (dumps without the note)."""

from __future__ import annotations

import struct
from pathlib import Path

import drgn
import numpy as np
import pytest
from oracles import built_folder, built_release

from kdumpkit.dump.base import Dump, DumpHeader, PageState
from kdumpkit.dump.elf import ElfDump
from kdumpkit.dump.notes import Note, encode_notes, find_vmcoreinfo_note, parse_notes
from kdumpkit.dump.open import open_dump
from kdumpkit.dump.source import BytesSource
from kdumpkit.kernel import vmcoreinfo_scan
from kdumpkit.kernel.vmcoreinfo_scan import (
    START_KERNEL_MAP,
    VmcoreinfoScanError,
    ensure_vmcoreinfo,
    find_vmcoreinfo,
    locate_vmcoreinfo,
    with_vmcoreinfo_note,
)

PAGE = 4096
MEM_BYTES = 4 << 20
PHYS_BASE = 0x100000
UTS_VADDR = START_KERNEL_MAP + 0x200000  # init_uts_ns at physical PHYS_BASE + 0x200000
RELEASE = "6.99.0-test"


def vmcoreinfo_text(release: str = RELEASE, uts_vaddr: int = UTS_VADDR) -> bytes:
    return (
        f"OSRELEASE={release}\nPAGESIZE=4096\nSYMBOL(init_uts_ns)={uts_vaddr:x}\n"
        f"OFFSET(uts_namespace.name)=0\nNUMBER(phys_base)={PHYS_BASE}\nKERNELOFFSET=2a00000\n"
    ).encode()


def note(text: bytes, descsz: int | None = None) -> bytes:
    """An ELF note as the kernel's update_vmcoreinfo_note() writes it."""
    desc = text + b"\0" * (-len(text) % 4)
    size = len(text) if descsz is None else descsz
    return struct.pack("<III", 11, size, 0) + b"VMCOREINFO\0\0" + desc


def utsname(release: str) -> bytes:
    return b"".join(f.encode().ljust(65, b"\0") for f in ("Linux", "(none)", release, "#1"))


def memory(*pieces: tuple[int, bytes], release: str = RELEASE) -> bytearray:
    """Physical memory with init_uts_ns in place and ``pieces`` written at their addresses."""
    mem = bytearray(MEM_BYTES)
    uts = UTS_VADDR - START_KERNEL_MAP + PHYS_BASE
    mem[uts : uts + 260] = utsname(release)
    for paddr, data in pieces:
        mem[paddr : paddr + len(data)] = data
    return mem


def elf_core(mem: bytes) -> ElfDump:
    """A QEMU-like ELF core: one PT_LOAD of all memory (vaddr 0), no notes."""
    ehdr = struct.pack(
        "<16sHHIQQQIHHHHHH",
        b"\x7fELF\x02\x01\x01" + bytes(9), 4, 62, 1, 0, 64, 0, 0, 64, 56, 1, 0, 0, 0,
    )  # fmt: skip
    offset = PAGE
    phdr = struct.pack("<IIQQQQQQ", 1, 7, offset, 0, 0, len(mem), len(mem), PAGE)
    head = (ehdr + phdr).ljust(offset, b"\0")
    return ElfDump(BytesSource(head + bytes(mem), "synthetic.elf"))


class PagesDump(Dump):
    """An in-memory dump with holes, read through the generic page interface."""

    def __init__(self, mem: bytes, present: np.ndarray) -> None:
        self.name = "pages"
        self._mem = bytes(mem)
        self._present = present
        self.header = DumpHeader(format="test", max_pfn=len(mem) // PAGE)
        self._init_notes(b"", [])

    def page_state(self, pfn: int) -> PageState:
        return PageState.PRESENT if self._present[pfn] else PageState.EXCLUDED

    def _read_present_page(self, pfn: int) -> bytes:
        return self._mem[pfn * PAGE : (pfn + 1) * PAGE]

    def present_bitmap(self) -> np.ndarray:
        return self._present


def test_page_aligned_note_is_found_and_installed() -> None:
    dump = elf_core(memory((0x345000, note(vmcoreinfo_text()))))
    assert dump.vmcoreinfo is None
    assert ensure_vmcoreinfo(dump)
    assert dump.vmcoreinfo is not None
    assert dump.vmcoreinfo.osrelease == RELEASE
    assert dump.vmcoreinfo.kerneloffset == 0x2A00000
    assert dump.header.extra["vmcoreinfo_paddr"] == 0x345000
    # the notes now carry it too, as a note segment every reader parses back
    reparsed = parse_notes(dump.note_data)
    assert reparsed == dump.notes
    assert find_vmcoreinfo_note(reparsed) == Note("VMCOREINFO", 0, vmcoreinfo_text(), 24)
    notes_before = dump.note_data
    assert ensure_vmcoreinfo(dump)  # already there: nothing to do
    assert dump.note_data == notes_before


def test_vmcoreinfo_note_joins_existing_notes() -> None:
    prstatus = Note("CORE", 1, bytes(range(256)) + bytes(80), 0)
    qemu = Note("QEMU", 0, b"q" * 438, 0)
    notes, data = with_vmcoreinfo_note([prstatus, qemu], b"OSRELEASE=x\n")
    assert [(n.name, n.type, n.desc) for n in parse_notes(data)] == [
        ("CORE", 1, prstatus.desc),
        ("QEMU", 0, qemu.desc),
        ("VMCOREINFO", 0, b"OSRELEASE=x\n"),
    ]
    assert parse_notes(data) == notes


def test_note_of_another_boot_is_passed_over() -> None:
    stale = note(vmcoreinfo_text("5.10.0-old"))
    good = note(vmcoreinfo_text())
    dump = elf_core(memory((0x10014, stale), (0x3F0000, good)))
    found = locate_vmcoreinfo(dump)
    assert found is not None and found.paddr == 0x3F0000 and found.verified


def test_unaligned_note_and_bare_text_are_fallbacks() -> None:
    text = vmcoreinfo_text()
    dump = elf_core(memory((0x12344, note(text))))
    found = locate_vmcoreinfo(dump)
    assert found is not None and found.kind == "note" and not found.page_aligned
    assert found.paddr == 0x12344 and found.raw == text
    dump = elf_core(memory((0x2000, text)))
    found = locate_vmcoreinfo(dump)
    assert found is not None and found.kind == "text" and found.raw == text
    # both: the bare text page is verified in the first pass, so no byte-wise second pass
    dump = elf_core(memory((0x12344, note(text)), (0x2000, text)))
    found = locate_vmcoreinfo(dump)
    assert found is not None and found.kind == "text" and found.paddr == 0x2000


def test_note_across_a_chunk_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vmcoreinfo_scan, "CHUNK_BYTES", 64 * PAGE)
    paddr = 64 * PAGE - 15  # the name starts in one chunk and ends in the next
    dump = elf_core(memory((paddr, note(vmcoreinfo_text()))))
    found = locate_vmcoreinfo(dump)
    assert found is not None and found.paddr == paddr


def test_malformed_notes_are_ignored() -> None:
    text = vmcoreinfo_text()
    huge = note(text, descsz=1 << 30)
    binary = note(b"OSRELEASE=\xff\xfe\n")
    no_pagesize = note(b"OSRELEASE=x\nFOO=1\n")
    dump = elf_core(memory((0x1000, huge), (0x2000, binary), (0x3000, no_pagesize)))
    assert find_vmcoreinfo(dump) is None
    assert not ensure_vmcoreinfo(dump)
    assert dump.vmcoreinfo is None


def test_memory_full_of_foreign_notes() -> None:
    # Every page (and an unaligned spot in each) holds a note of another boot: all
    # are judged and dropped, none is kept.
    stale = note(vmcoreinfo_text("5.10.0-old"))
    pieces = [(paddr, stale) for paddr in range(0, MEM_BYTES, PAGE) if paddr != 0x300000]
    pieces += [(paddr + 0x800, stale) for paddr in range(0, MEM_BYTES, 16 * PAGE)]
    dump = elf_core(memory(*pieces))
    assert locate_vmcoreinfo(dump) is None


def test_unverifiable_note_is_used_when_nothing_better() -> None:
    # init_uts_ns lies outside the dump: the note cannot be checked, but is still taken.
    text = vmcoreinfo_text(uts_vaddr=START_KERNEL_MAP + (64 << 20))
    dump = elf_core(memory((0x5000, note(text))))
    found = locate_vmcoreinfo(dump)
    assert found is not None and found.verified is None and found.raw == text


def test_generic_page_path_skips_excluded_pages() -> None:
    mem = memory(
        (0x200000 - 0x3000, note(vmcoreinfo_text("5.10.0-old"))),
        (0x3A0000, note(vmcoreinfo_text())),
    )
    present = np.ones(MEM_BYTES // PAGE, dtype=bool)
    present[0x3A0] = False  # the good note's page was filtered out
    dump = PagesDump(mem, present)
    assert find_vmcoreinfo(dump) is None
    present[0x3A0] = True
    found = locate_vmcoreinfo(dump)
    assert found is not None and found.paddr == 0x3A0000


def test_time_limit_gives_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vmcoreinfo_scan, "CHUNK_BYTES", 16 * PAGE)
    dump = elf_core(memory())
    with pytest.raises(VmcoreinfoScanError, match="giving up"):
        locate_vmcoreinfo(dump, time_limit=0)


def test_real_dump_note_found_in_memory(elf61: Path, kdump61: Path) -> None:
    for path in (elf61, kdump61):
        with open_dump(path) as dump:
            assert dump.vmcoreinfo is not None
            expected = dump.vmcoreinfo.raw
            dump.vmcoreinfo = None
            found = locate_vmcoreinfo(dump)
            assert found is not None and found.verified and found.page_aligned
            # the capture kernel's copy in the dump is the one in memory, CRASHTIME included
            assert found.raw == expected


def _oracle_dump(series: str, variant: str, name: str) -> Path:
    """The testbed's QEMU dump ``name`` of ``series`` (python3 testbed/build.py), or skip."""
    return built_folder(series, f"qemu-{variant}", name) / name


#: the testbed's kernel series (testbed/build.py KERNELS) with QEMU dumps without VMCOREINFO
SERIES = ["6.1", "6.12"]


@pytest.mark.parametrize("name", ["vmcore.qemu.elf", "vmcore.qemu.kdump"])
@pytest.mark.parametrize("series", SERIES)
def test_real_qemu_dump_without_vmcoreinfo(series: str, name: str) -> None:
    from kdumpkit.analyze.program import program_from_dump
    from kdumpkit.kernel.printk import get_printk_records, render_dmesg
    from kdumpkit.kernel.x86_64 import address_space

    kver = built_release(series)
    with open_dump(_oracle_dump(series, "nofwcfg", name)) as dump:
        assert dump.vmcoreinfo is None
        assert ensure_vmcoreinfo(dump)
        info = dump.vmcoreinfo
        assert info is not None and info.osrelease == kver
        assert info.crashtime is None  # written at boot, never updated without kdump
        space = address_space(dump)
        name_at = info.symbol("init_uts_ns") + (info.offset("uts_namespace.name") or 0)
        release = space.read(name_at + 2 * 65, 65)
        assert release.split(b"\0")[0].decode() == kver
        records = get_printk_records(dump)
        texts = [r.text for r in records]
        assert any(b"TESTBED marker: hello from " + kver.encode() in t for t in texts)
        assert any(b"sysrq: Trigger a crash" in t for t in texts)
        # the whole log, as crash 9.0.2 (with the DWARF vmlinux) prints it for this dump
        crash_log = built_folder(series, "qemu-nofwcfg") / "crash-9.0.2" / name / "log.txt"
        if crash_log.exists():
            assert render_dmesg(records, caller_id=False) == crash_log.read_bytes()
        # drgn accepts the dump's notes once they carry VMCOREINFO
        prog = program_from_dump(dump)
        assert prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL


@pytest.mark.parametrize("series", SERIES)
def test_real_note_has_the_keys_of_another_boots_vmcoreinfo(series: str) -> None:
    # The fwcfg dump (another boot of the same kernel) got VMCOREINFO from the guest:
    # same keys; only KASLR-dependent values may differ.
    with (
        open_dump(_oracle_dump(series, "nofwcfg", "vmcore.qemu.elf")) as found_in,
        open_dump(_oracle_dump(series, "fwcfg", "vmcore.qemu.elf")) as given_in,
    ):
        assert ensure_vmcoreinfo(found_in)
        found, given = found_in.vmcoreinfo, given_in.vmcoreinfo
        assert found is not None and given is not None
        assert set(found) == set(given)
        differing = {key for key in found if found[key] != given[key]}
        assert differing <= {key for key in found if key.startswith("SYMBOL(")} | {
            "KERNELOFFSET",
            "NUMBER(phys_base)",
            "NUMBER(VMALLOC_START)",
        }


def test_verbs_recover_vmcoreinfo_of_a_dump_without_the_note(
    kdump61: Path, fx61: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """info, dmesg and save on a copy of the fixture whose notes lack VMCOREINFO."""
    from kdumpkit.cli.main import main
    from kdumpkit.dump.writer import write_dump

    bare = tmp_path / "no-vmcoreinfo.kdump"
    with open_dump(kdump61) as dump:
        kept = [n for n in dump.notes if n.name != "VMCOREINFO"]
        dump.notes, dump.note_data = encode_notes(kept)
        dump.vmcoreinfo = None
        write_dump(dump, bare, fmt="kdump", compress="zlib")
    with open_dump(bare) as dump:
        assert dump.vmcoreinfo is None

    assert main(["info", str(bare)]) == 0
    assert "found in memory" in capsys.readouterr().out
    log = tmp_path / "dmesg.txt"
    assert main(["dmesg", str(bare), str(log)]) == 0
    assert log.read_bytes() == (fx61 / "makedumpfile" / "dump-dmesg-1.7.8.txt").read_bytes()
    saved = tmp_path / "resaved.kdump"
    assert main(["save", "-q", "-d", "31", "--compress", "zlib", str(bare), str(saved)]) == 0
    with open_dump(saved) as dump:
        assert dump.vmcoreinfo is not None  # the recovered note travels with the dump
