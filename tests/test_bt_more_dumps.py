"""``bt``, ``bt -a`` and ``foreach bt`` on every further dump the testbed made (6.12 kdump,
QEMU ``dump-guest-memory`` dumps), against crash 9.0.2 run on the same dump with DWARF.

The dumps live in ``.cache/oracle`` (made by ``python3 testbed/build.py``); without them
these tests skip (fail under ``make e2e``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from oracles import ORACLE

from kdumpkit.analyze.program import open_program
from kdumpkit.analyze.session import Session
from kdumpkit.dump.errors import DumpFormatError

COMMANDS = {"bt": "bt.txt", "bt -a": "bt-a.txt", "foreach bt": "foreach-bt.txt"}
#: Our readers' preference among the files crash read, smallest first.
DUMP_NAMES = (
    "vmcore.mdf-1.7.8.kdump",
    "vmcore.kdump",
    "vmcore.qemu.kdump",
    "vmcore.elf",
    "vmcore.qemu.elf",
)


def oracle_cases() -> list[tuple[Path, Path]]:
    """(dump file, crash output folder) for each testbed dump crash analysed."""
    cases = []
    if not ORACLE.is_dir():
        return cases
    for folder in sorted(ORACLE.iterdir()):
        outputs = folder / "crash-9.0.2"
        if not outputs.is_dir():
            continue
        for name in DUMP_NAMES:
            dump = folder / name
            if dump.is_file() and all((outputs / name / f).is_file() for f in COMMANDS.values()):
                cases.append((dump, outputs / name))
                break
    return cases


CASES = oracle_cases()


FRAME_RE = re.compile(r"\s*#\d+ (\[[0-9a-f]+\] .*)$")


def frames_of(block: str) -> list[str]:
    """A bt block's frame lines without their numbers."""
    return [m.group(1) for line in block.splitlines() if (m := FRAME_RE.match(line))]


def same_task_trace(ours: str, theirs: str) -> bool:
    """Equal, or -- only for a hypervisor dump's panic task, where crash starts at the
    ``panic`` frame found on the stack -- crash's frames are the last of ours (the
    registers QEMU saved show the panic notifier that ran when the guest stopped)."""
    if ours == theirs:
        return True
    our_frames, their_frames = frames_of(ours), frames_of(theirs)
    return (
        bool(their_frames)
        and len(our_frames) > len(their_frames)
        and our_frames[-len(their_frames) :] == their_frames
        and their_frames[0].split()[1] == "panic"
    )


@pytest.mark.skipif(
    not CASES,
    reason="the testbed's dumps with crash 9.0.2's outputs [make it: python3 testbed/build.py]",
)
@pytest.mark.parametrize(
    ("dump", "outputs"), CASES, ids=[f"{d.parent.name}/{d.name}" for d, _ in CASES] or None
)
def test_bt_matches_crash(dump: Path, outputs: Path) -> None:
    try:
        prog = open_program(dump)
    except DumpFormatError as exc:
        pytest.skip(f"not analysable without a vmlinux: {exc}")
    session = Session(prog)
    for command, filename in COMMANDS.items():
        expected = (outputs / filename).read_text()
        ours = session.run_to_text(command)
        ours_blocks, their_blocks = ours.split("\n\n"), expected.split("\n\n")
        assert len(ours_blocks) == len(their_blocks), command
        matched = sum(same_task_trace(a, b) for a, b in zip(ours_blocks, their_blocks, strict=True))
        assert matched == len(their_blocks), (
            f"{command}: {matched}/{len(their_blocks)} tasks equal to crash"
        )


VMLINUX_61 = (
    ORACLE
    / "kernels"
    / "6.1.0-56-cloud-amd64"
    / "usr"
    / "lib"
    / "debug"
    / "boot"
    / "vmlinux-6.1.0-56-cloud-amd64"
)


@pytest.mark.skipif(not VMLINUX_61.is_file(), reason=f"{VMLINUX_61} [make it: make oracles]")
def test_bt_with_a_dwarf_vmlinux_is_still_crash_text(kdump61: Path, fx61: Path) -> None:
    # drgn names an address by the sized ELF symbol around it; crash (and kallsyms) by
    # the nearest label: entry_SYSCALL_64_after_hwframe, secondary_startup_64_no_verify.
    session = Session(open_program(kdump61, vmlinux=VMLINUX_61))
    for command, filename in (("bt -a", "bt-a.txt"), ("foreach bt", "foreach-bt.txt")):
        assert session.run_to_text(command) == (fx61 / "crash-9.0.2" / filename).read_text()
