"""arm64 kernels from VMCOREINFO alone, on the arm64 testbed's real Debian dumps (read on
this x86_64 host): the architecture, NT_PRSTATUS, address translation (checked against
drgn's own arm64 translation), utsname, kallsyms, struct pages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import drgn
import pytest
from arm64_fixtures import KVER_6_1, KVER_6_12, arm64_file

from kdumpkit.dump.base import Dump
from kdumpkit.dump.open import open_dump
from kdumpkit.kernel.aarch64 import AArch64AddressSpace
from kdumpkit.kernel.arch import address_space, machine_of
from kdumpkit.kernel.info import utsname
from kdumpkit.kernel.kallsyms import kallsyms
from kdumpkit.kernel.memmap import SparseMem
from kdumpkit.kernel.vaspace import TranslationError

DUMPS = [
    (f"kdump-{KVER_6_1}-load", "vmcore.elf"),
    (f"kdump-{KVER_6_1}-load", "vmcore.kdump"),
    (f"qemu-{KVER_6_1}-fwcfg", "vmcore.qemu.elf"),
    (f"qemu-{KVER_6_1}-fwcfg", "vmcore.qemu.kdump"),
    (f"kdump-{KVER_6_12}-load", "vmcore.elf"),
    (f"kdump-{KVER_6_12}-load-cpumax", "vmcore.elf"),
]


@pytest.fixture(params=DUMPS, ids=lambda d: f"{d[0]}/{d[1]}")
def arm64_dump(request: pytest.FixtureRequest) -> Iterator[Dump]:
    folder, name = request.param
    with open_dump(arm64_file(folder, name)) as dump:
        yield dump


def test_machine_is_told_by_the_header_or_vmcoreinfo(arm64_dump: Dump) -> None:
    # QEMU's kdump header says "Unknown": VMCOREINFO's arm64 keys tell.
    assert machine_of(arm64_dump) == "aarch64"
    assert isinstance(address_space(arm64_dump), AArch64AddressSpace)


def test_prstatus_has_the_arm64_registers(arm64_dump: Dump) -> None:
    statuses = arm64_dump.prstatus
    assert len(statuses) == 2
    for status in statuses:
        assert list(status.registers) == [*(f"x{i}" for i in range(31)), "sp", "pc", "pstate"]
    # The panic CPU is in the kernel (EL1h), its pc and sp kernel addresses.
    kernel = [s for s in statuses if s.registers["pstate"] & 0xF == 0b0101]
    assert kernel and all(s.registers["pc"] >> 48 == 0xFFFF for s in kernel)


def test_utsname_and_kallsyms(arm64_dump: Dump) -> None:
    assert arm64_dump.vmcoreinfo is not None
    release = arm64_dump.vmcoreinfo.osrelease
    uts = utsname(arm64_dump)
    assert uts["release"] == release and uts["machine"] == "aarch64"
    table = kallsyms(arm64_dump)
    assert table is not None
    for name in ("_stext", "swapper_pg_dir", "mem_section", "prb"):
        wanted = arm64_dump.vmcoreinfo.symbol(name)
        if wanted is not None and name == "_stext":
            assert table.lookup(name) == wanted


def _drgn_program(dump: Dump) -> drgn.Program:
    from kdumpkit.analyze.program import program_from_dump

    return program_from_dump(dump)


def test_translation_agrees_with_drgn(arm64_dump: Dump) -> None:
    """Every kind of kernel address reads the same bytes through our translation as
    through drgn's own arm64 page-table code."""
    space = address_space(arm64_dump)
    assert isinstance(space, AArch64AddressSpace)
    info = arm64_dump.vmcoreinfo
    assert info is not None
    prog = _drgn_program(arm64_dump)
    memmap = SparseMem(arm64_dump) if info.page_size == arm64_dump.page_size else None
    addresses = [info.symbol(n) for n in ("_stext", "swapper_pg_dir", "prb", "init_uts_ns")]
    addresses += [s.registers["sp"] for s in arm64_dump.prstatus if s.registers["sp"] >> 48]
    ram = arm64_dump.present_bitmap().nonzero()[0]
    pfns = [int(p) for p in ram[:: max(1, len(ram) // 16)]]
    addresses += [space.p2v(pfn * arm64_dump.page_size) + 8 for pfn in pfns]
    if memmap is not None:
        addresses += [s.mem_map for s in memmap.sections[:4]]
    checked = 0
    for address in addresses:
        if address is None:
            continue
        try:
            theirs = prog.read(address, 64)
        except drgn.FaultError:
            continue
        assert space.read(address, 64) == theirs, hex(address)
        checked += 1
    assert checked >= 10


def test_linear_map_matches_the_page_tables(arm64_dump: Dump) -> None:
    space = address_space(arm64_dump)
    assert isinstance(space, AArch64AddressSpace)
    stext = arm64_dump.vmcoreinfo.symbol("_stext")  # type: ignore[union-attr]
    assert space.walk(stext) == space.kimage_v2p(stext)
    ram = arm64_dump.present_bitmap().nonzero()[0]
    page = space.page_size
    walked = 0
    for pfn in ram[:: max(1, len(ram) // 64)].tolist():
        vaddr = space.p2v(pfn * arm64_dump.page_size)
        assert space.is_linear(vaddr)
        try:
            assert space.walk(vaddr) == space.v2p(vaddr), hex(vaddr)
            walked += 1
        except TranslationError:
            pass  # not mapped (the crash kernel's reservation, no-map regions)
    assert walked >= 16
    assert page in (4096, 16384, 65536)


def test_runtime_va_size_and_pac(request: pytest.FixtureRequest) -> None:
    """6.12 is built for 52-bit VAs: 48 at run time on cortex-a76 (with the 52-bit
    PAGE_OFFSET), 52 with LPA2 and pointer authentication on -cpu max."""
    expected = {
        f"kdump-{KVER_6_1}-load": (48, 48, 0xFFFF000000000000, False, 0),
        f"kdump-{KVER_6_12}-load": (52, 48, 0xFFF0000000000000, False, 0),
        f"kdump-{KVER_6_12}-load-cpumax": (52, 52, 0xFFF0000000000000, True, 0xFFF0000000000000),
    }
    for folder, (va_bits, actual, page_offset, lpa2, pac) in expected.items():
        with open_dump(arm64_file(folder, "vmcore.elf")) as dump:
            space = address_space(dump)
            assert isinstance(space, AArch64AddressSpace)
            assert (space.va_bits, space.va_bits_actual) == (va_bits, actual)
            assert (space.page_offset, space.lpa2, space.pac_mask) == (page_offset, lpa2, pac)
            assert space.levels == (5 if lpa2 else 4)
            assert space.strip_pac(0x003C800008012345 | 0xFFFF800000000000) == (
                0xFFFF800008012345 | pac if pac else 0x003C800008012345 | 0xFFFF800000000000
            )


def test_no_vmcoreinfo_is_one_clear_error() -> None:
    path: Path = arm64_file(f"qemu-{KVER_6_1}-nofwcfg", "vmcore.qemu.elf")
    with open_dump(path) as dump:
        assert dump.header.machine == "aarch64"
        with pytest.raises(Exception, match="no VMCOREINFO"):
            AArch64AddressSpace(dump)
