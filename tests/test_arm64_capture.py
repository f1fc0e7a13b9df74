"""Capture on arm64 dumps, on this x86_64 host: ``dmesg`` byte-identical to makedumpfile
1.7.8's, ``save -d 31`` keeping exactly the pages it keeps and writing its very bytes
(sid's arm64 makedumpfile, run under qemu-user), on Debian's 6.1 arm64 kernel."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from arm64_fixtures import KVER_6_1, KVER_6_12, arm64_file, makedumpfile_178_arm64

from kdumpkit.capture.filter import exclude_unnecessary_pages
from kdumpkit.capture.save import save_dump
from kdumpkit.cli.main import main
from kdumpkit.dump.open import open_dump
from kdumpkit.kernel.printk import get_printk_records

KDUMP_6_1 = f"kdump-{KVER_6_1}-load"


@pytest.mark.parametrize("name", ["vmcore.elf", "vmcore.kdump", "vmcore.flat"])
def test_dmesg_is_makedumpfiles(name: str, tmp_path: Path) -> None:
    reference = arm64_file(KDUMP_6_1, "ref-dmesg-1.7.8.txt")
    out = tmp_path / "dmesg.txt"
    assert main(["dmesg", str(arm64_file(KDUMP_6_1, name)), str(out)]) == 0
    assert out.read_bytes() == reference.read_bytes()


@pytest.mark.parametrize(
    ("folder", "name"),
    [
        (f"qemu-{KVER_6_1}-fwcfg", "vmcore.qemu.elf"),
        (f"qemu-{KVER_6_1}-fwcfg", "vmcore.qemu.kdump"),
        (f"kdump-{KVER_6_12}-load", "vmcore.elf"),
        (f"kdump-{KVER_6_12}-load-cpumax", "vmcore.elf"),
    ],
)
def test_dmesg_of_the_other_dumps_ends_in_the_panic(folder: str, name: str) -> None:
    with open_dump(arm64_file(folder, name)) as dump:
        records = get_printk_records(dump)
    texts = [r.text for r in records]
    assert any(b"TESTBED marker: hello from" in t for t in texts)
    assert any(b"Kernel panic - not syncing: sysrq triggered crash" in t for t in texts)


def test_save_level_31_keeps_makedumpfiles_pages() -> None:
    # The capture kernel's own makedumpfile 1.7.8 run on /proc/vmcore.
    elf = arm64_file(KDUMP_6_1, "vmcore.elf")
    reference = arm64_file(KDUMP_6_1, "vmcore.mdf-1.7.8.kdump")
    with open_dump(elf) as src, open_dump(reference) as theirs:
        result = exclude_unnecessary_pages(src, 31)
        keep = result.keep.copy()
        keep[: len(keep)] &= src.present_bitmap()
        their_keep = theirs.present_bitmap()
        assert theirs.header.dump_level == 31
        # makedumpfile also drops zero pages (level bit 1) while writing.
        zero = np.flatnonzero(keep & ~their_keep)
        assert not np.any(their_keep & ~keep)
        assert all(src.read_page(int(pfn)) == bytes(src.page_size) for pfn in zero[:200])


def test_save_is_makedumpfile_178s_bytes(tmp_path: Path) -> None:
    elf = arm64_file(KDUMP_6_1, "vmcore.elf")
    theirs = tmp_path / "theirs"
    subprocess.run(
        [*makedumpfile_178_arm64(), "-z", "-d", "31", str(elf), str(theirs)],
        check=True, capture_output=True,
    )  # fmt: skip
    ours = tmp_path / "ours"
    with open_dump(elf) as src:
        save_dump(src, ours, dump_level=31, compress="zstd", threads=2)
    assert ours.read_bytes() == theirs.read_bytes()


@pytest.mark.parametrize("folder", [f"kdump-{KVER_6_12}-load", f"kdump-{KVER_6_12}-load-cpumax"])
def test_save_of_52_bit_kernel_answers_like_the_whole_dump(folder: str, tmp_path: Path) -> None:
    """makedumpfile gives up on 6.12 ("PAGE SIZE 0x1000 and VA Bits 52 not supported"):
    kdumpkit's -d 31 dump answers every command, with no vmlinux, as the whole dump does."""
    from kdumpkit.analyze.program import open_program
    from kdumpkit.analyze.session import Session

    elf = arm64_file(folder, "vmcore.elf")
    out = tmp_path / "dump.kdump"
    assert main(["save", "-d", "31", str(elf), str(out)]) == 0
    with open_dump(elf) as whole, open_dump(out) as filtered:
        assert filtered.header.utsname["machine"] == "aarch64"
        kept = filtered.present_bitmap().sum()
        assert 0 < kept < whole.present_bitmap().sum() // 4
    ours, reference = Session(open_program(out)), Session(open_program(elf))
    for command in ("ps", "log", "mod", "kmem -i", "runq", "bt -a", "foreach bt", "sys"):
        text, expected = ours.run_to_text(command), reference.run_to_text(command)
        if command == "sys":  # DUMPFILE names the file
            text, expected = (
                "\n".join(line for line in t.splitlines() if "DUMPFILE" not in line)
                for t in (text, expected)
            )
        assert text == expected, command
    out.unlink()


def test_qemu_kdump_with_64k_blocks_is_refused_in_one_line(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    # QEMU 7.2 writes arm64 kdump files in 64 KiB blocks for a 4 KiB-page kernel.
    path = arm64_file(f"qemu-{KVER_6_1}-fwcfg", "vmcore.qemu.kdump")
    assert main(["save", "-d", "31", str(path), str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err
    assert "65536-byte pages are not the kernel's 4096-byte pages" in err
    assert "Traceback" not in err


def test_qemu_dump_without_vmcoreinfo_finds_it_in_memory(tmp_path: Path) -> None:
    """QEMU's dump of an arm64 guest with no vmcoreinfo device: the note the kernel keeps
    in memory is found, and the log and a -d 31 save follow from it."""
    from kdumpkit.kernel.vmcoreinfo_scan import ensure_vmcoreinfo

    path = arm64_file(f"qemu-{KVER_6_1}-nofwcfg", "vmcore.qemu.elf")
    with open_dump(path) as dump:
        assert dump.vmcoreinfo is None
        assert ensure_vmcoreinfo(dump)
        assert dump.vmcoreinfo is not None and dump.vmcoreinfo.osrelease == KVER_6_1
        texts = [r.text for r in get_printk_records(dump)]
    assert any(b"Kernel panic - not syncing: sysrq triggered crash" in t for t in texts)
    out = tmp_path / "dump.kdump"
    assert main(["save", "-d", "31", str(path), str(out)]) == 0
    with open_dump(out) as saved:
        assert saved.vmcoreinfo is not None and saved.header.dump_level == 31
        assert [r.text for r in get_printk_records(saved)] == texts
