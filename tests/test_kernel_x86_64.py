"""Address translation on the real 6.1 dump, in every format."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdumpkit.dump.errors import DumpError
from kdumpkit.dump.open import open_dump
from kdumpkit.kernel.info import utsname
from kdumpkit.kernel.x86_64 import START_KERNEL_MAP, TranslationError, address_space


def test_bases_match_drgn_and_elf(dump, elf61: Path, fx61: Path) -> None:
    space = address_space(dump)
    assert space is address_space(dump)
    info = dump.vmcoreinfo
    assert space.kaslr_offset == info.kerneloffset
    assert space.phys_base == info.number("phys_base")
    # Kernels before 4.10 have no NUMBER(phys_base): the ELF text segment or kdump header say.
    assert space._phys_base_from_headers(dump) == space.phys_base
    assert space.pgtable_l5 is False
    # The ELF's RAM PT_LOADs are the kernel's own statement of the direct map.
    with open_dump(elf61) as elf:
        deltas = {s.vaddr - s.paddr for s in elf.segments if s.vaddr < START_KERNEL_MAP}
    assert {space.page_offset_base} == deltas
    # The fallbacks that need no ELF program headers find the same bases.
    assert space._page_offset_from_page_tables() == space.page_offset_base
    assert space._vmemmap_from_mem_section() == space.vmemmap_base
    # drgn-0.3.0/with-vmlinux.txt: vmemmap = (struct page *)0xfffff85900000000
    drgn = (fx61 / "drgn-0.3.0" / "with-vmlinux.txt").read_text()
    assert f"vmemmap = (struct page *){space.vmemmap_base:#x}" in drgn


def test_fast_paths_agree_with_page_walk(dump) -> None:
    space = address_space(dump)
    info = dump.vmcoreinfo
    text_addrs = [info.symbol(n) for n in ("init_uts_ns", "prb", "_stext", "init_top_pgt")]
    direct_addrs = [info.symbol("mem_section"), space.page_offset_base + 0x100000]
    direct_addrs.append(space.page_offset_base + 0x1234567)
    for vaddr in text_addrs + direct_addrs:
        assert space.v2p(vaddr) == space.walk(vaddr), hex(vaddr)
        assert space.p2v(space.v2p(vaddr)) == vaddr or space.is_kernel_text(vaddr)
    assert (
        space.v2p(info.symbol("_stext"))
        == info.symbol("_stext") - START_KERNEL_MAP + space.phys_base
    )


def test_release_read_through_virtual_addresses(dump) -> None:
    info = dump.vmcoreinfo
    space = address_space(dump)
    name = info.symbol("init_uts_ns") + info.offset("uts_namespace.name")
    assert space.read_cstring(name + 2 * 65, 65).decode() == info.osrelease
    uts = utsname(dump)
    assert uts["sysname"] == "Linux"
    assert uts["release"] == info.osrelease == "6.1.0-56-cloud-amd64"
    assert uts["machine"] == "x86_64"
    assert "Debian 6.1.192-2" in uts["version"]


def test_read_across_pages_equals_pieces(dump) -> None:
    space = address_space(dump)
    start = dump.vmcoreinfo.symbol("prb") - 100
    whole = space.read(start, 9000)
    pieces = b"".join(space.read(start + i, 1000) for i in range(0, 9000, 1000))
    assert whole == pieces and len(whole) == 9000
    assert space.read_u64(start) == int.from_bytes(whole[:8], "little")
    assert space.read_u32(start + 4) == int.from_bytes(whole[4:8], "little")


def test_unmapped_address_names_address_and_level(dump) -> None:
    space = address_space(dump)
    pgd = space._table(space.pgd_paddr)
    slot = next(i for i in range(256, 512) if not pgd[i] & 1)  # a kernel PGD slot nothing maps
    vaddr = (0xFFFF << 48) | (slot << 39) | 0x1234
    with pytest.raises(TranslationError) as exc:
        space.walk(vaddr)
    message = str(exc.value)
    assert f"{vaddr:#x}" in message and "not present" in message and "\n" not in message
    assert space.read(vaddr, 16, zero_missing=True) == bytes(16)
    with pytest.raises(TranslationError, match="not canonical"):
        space.walk(0x0000900000000000)


def test_no_vmcoreinfo_is_one_clear_error(tmp_path: Path) -> None:
    from kdumpkit.dump.base import DumpHeader
    from kdumpkit.dump.elf import ElfDump

    dump = ElfDump.__new__(ElfDump)
    dump.name, dump.vmcoreinfo, dump.header = "qemu.core", None, DumpHeader(format="elf")
    with pytest.raises(DumpError, match="no VMCOREINFO") as exc:
        address_space(dump)
    assert "\n" not in str(exc.value)


def test_other_architectures_are_refused(elf61: Path) -> None:
    with open_dump(elf61) as dump:
        dump.header.machine = "aarch64"
        with pytest.raises(DumpError, match="aarch64 dump; only x86_64"):
            address_space(dump)
