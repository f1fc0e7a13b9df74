"""Analysis of arm64 dumps with no vmlinux, on this x86_64 host: BTF found in memory when
kallsyms lists only text (Debian 12's arm64 6.1 cloud kernel), the kernel log; stacks in
test_arm64_stack.py."""

from __future__ import annotations

import pytest
from arm64_fixtures import KVER_6_1, KVER_6_12, arm64_file, arm64_vmlinux
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from kdumpkit.analyze.program import open_program, program_from_dump
from kdumpkit.debuginfo.loader import find_vmlinux_btf
from kdumpkit.debuginfo.symbols import load_vmcoreinfo_kallsyms
from kdumpkit.dump.open import open_dump


def _elf_symbols(path: str, names: set[str]) -> dict[str, int]:
    with open(path, "rb") as file:
        elf = ELFFile(file)
        table = elf.get_section_by_name(".symtab")
        assert isinstance(table, SymbolTableSection)
        return {s.name: s["st_value"] for s in table.iter_symbols() if s.name in names}


def test_btf_is_found_where_the_vmlinux_puts_it() -> None:
    path = arm64_file(f"kdump-{KVER_6_1}-load", "vmcore.kdump")
    vmlinux = arm64_vmlinux(KVER_6_1)
    if vmlinux is None:
        pytest.skip("the arm64 6.1 -dbg vmlinux is not cached")
    with open_dump(path) as dump:
        assert dump.vmcoreinfo is not None
        prog = program_from_dump(dump)
        symbols = load_vmcoreinfo_kallsyms(dump.vmcoreinfo, prog.read)
        assert symbols.address("__start_BTF") is None  # CONFIG_KALLSYMS_ALL is unset
        found = find_vmlinux_btf(prog, symbols)
        kaslr = dump.vmcoreinfo.kerneloffset or 0
    want = _elf_symbols(str(vmlinux), {"__start_BTF", "__stop_BTF"})
    assert found == (want["__start_BTF"] + kaslr, want["__stop_BTF"] + kaslr)


@pytest.mark.parametrize(
    ("folder", "name"),
    [
        (f"kdump-{KVER_6_1}-load", "vmcore.kdump"),
        (f"kdump-{KVER_6_12}-load", "vmcore.elf"),
        (f"kdump-{KVER_6_12}-load-cpumax", "vmcore.elf"),
    ],
)
def test_types_from_btf_without_vmlinux(folder: str, name: str) -> None:
    prog = open_program(arm64_file(folder, name))
    task = prog.type("struct task_struct")
    assert task.size > 1000
    assert prog.type("struct cpu_context").size == 13 * 8  # x19-x28, fp, sp, pc


@pytest.mark.parametrize("command", ["sys", "log", "mod", "kmem -i", "runq"])
def test_commands_are_crash_text_on_6_1(command: str) -> None:
    """crash 9.0.2 (arm64, under qemu-user) with the DWARF vmlinux on 6.1, given to both
    (6.1's kallsyms lists no variables, so without it only log works); ``ps`` still
    differs (see the report: crash's %MEM base and its WA state on arm64)."""
    folder = arm64_file(f"kdump-{KVER_6_1}-load", "vmcore.kdump").parent
    name = command.replace(" -", "-").replace(" ", "-")
    reference = folder / "crash-9.0.2" / "vmcore.kdump" / f"{name}.txt"
    vmlinux = arm64_vmlinux(KVER_6_1)
    if not reference.exists() or vmlinux is None:
        pytest.skip("crash 9.0.2's arm64 output or the -dbg vmlinux is not made (50-crash.sh)")
    from kdumpkit.analyze.session import Session

    session = Session(open_program(folder / "vmcore.kdump", vmlinux))
    assert session.run_to_text(command) == reference.read_text()


def test_log_without_vmlinux_is_crash_text_on_6_1() -> None:
    folder = arm64_file(f"kdump-{KVER_6_1}-load", "vmcore.kdump").parent
    reference = folder / "crash-9.0.2" / "vmcore.kdump" / "log.txt"
    if not reference.exists():
        pytest.skip("crash 9.0.2's arm64 output is not made (50-crash.sh)")
    from kdumpkit.analyze.session import Session

    session = Session(open_program(folder / "vmcore.kdump"))
    assert session.run_to_text("log") == reference.read_text()


def test_ps_is_crash_text_on_6_1_but_the_waking_state() -> None:
    """crash's %MEM on arm64 divides by high_memory's pfn; every column but ST is crash's
    (crash 9.0.2 prints WA for a task in TASK_WAKING, which ps does not know yet)."""
    folder = arm64_file(f"kdump-{KVER_6_1}-load", "vmcore.kdump").parent
    reference = folder / "crash-9.0.2" / "vmcore.kdump" / "ps.txt"
    vmlinux = arm64_vmlinux(KVER_6_1)
    if not reference.exists() or vmlinux is None:
        pytest.skip("crash 9.0.2's arm64 output or the -dbg vmlinux is not made (50-crash.sh)")
    from kdumpkit.analyze.session import Session

    ours = Session(open_program(folder / "vmcore.kdump", vmlinux)).run_to_text("ps").splitlines()
    theirs = reference.read_text().splitlines()
    assert len(ours) == len(theirs)
    differing = [(a, b) for a, b in zip(ours, theirs, strict=True) if a != b]
    for a, b in differing:
        assert a.replace("  RU  ", "  WA  ") == b
    assert len(differing) <= 1


@pytest.mark.parametrize(
    "command", ["sys", "ps", "log", "mod", "kmem -i", "runq", "bt", "bt -a", "foreach bt"]
)
def test_commands_without_vmlinux_are_crash_text_on_6_12(command: str) -> None:
    """6.12 built for 52-bit VAs, run with 48 (cortex-a76), no vmlinux: the text of crash
    9.0.2 with the DWARF vmlinux (and --machdep phys_offset=, without which it cannot
    open this dump; testbed/arm64/50-crash.sh PHYS_OFFSET_FIX=1). sys but for KERNEL (the
    vmlinux's path) and UPTIME (crash's is wrong: '2135039823346 days' for 6 s)."""
    folder = arm64_file(f"kdump-{KVER_6_12}-load", "vmcore.elf").parent
    name = command.replace(" -", "-").replace(" ", "-")
    reference = folder / "crash-9.0.2-phys_offset-fix" / "vmcore.elf" / f"{name}.txt"
    if not reference.exists():
        pytest.skip("crash 9.0.2's output for 6.12 is not made (PHYS_OFFSET_FIX=1 50-crash.sh)")
    from kdumpkit.analyze.session import Session

    text = Session(open_program(folder / "vmcore.elf")).run_to_text(command)
    expected = reference.read_text()
    if command == "sys":
        text, expected = (
            "\n".join(
                line
                for line in t.splitlines()
                if line.split(":")[0].strip() not in ("KERNEL", "UPTIME")
            )
            for t in (text, expected)
        )
    assert text == expected
