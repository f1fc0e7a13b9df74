"""arm64 (aarch64) kernel virtual addresses, from VMCOREINFO alone (no vmlinux, no types).

What ``arch/arm64/kernel/vmcore_info.c`` exports, and what each gives:

* ``NUMBER(VA_BITS)``: the configured virtual address size; since Linux 5.9 (commit
  bbdbc11804ff, "arm64/crash_core: Export TCR_EL1.T1SZ in vmcoreinfo")
  ``NUMBER(TCR_EL1_T1SZ)`` gives the size the kernel runs with (``64 - T1SZ``): a
  kernel built for 52 bits runs with 48 on a CPU without LVA/LPA2;
* ``NUMBER(kimage_voffset)``: kernel image virtual minus physical address;
* ``NUMBER(PHYS_OFFSET)`` (``memstart_addr``): the linear map's physical base.  Under
  KASLR's linear-map randomisation, and for a 52-bit kernel running with 48 bits,
  it is a "negative" number; the arithmetic below is modulo 2**64, as the kernel's;
* ``NUMBER(KERNELPACMASK)``: the pointer-authentication bits of kernel return
  addresses (0 without pointer authentication);
* ``KERNELOFFSET``, ``PAGESIZE`` (4K, 16K or 64K), ``SYMBOL(swapper_pg_dir)``.

Translation takes, in order:

* the linear map: ``paddr = vaddr - PAGE_OFFSET + PHYS_OFFSET`` for ``vaddr`` in
  ``[PAGE_OFFSET, PAGE_END)``.  Since Linux 5.4 (commit 14c127c957c1, "arm64: mm: Flip
  kernel VA space") the linear map is the lower half of the kernel's space,
  ``PAGE_OFFSET = -2**VA_BITS`` and ``PAGE_END = -2**(min(VA_BITS, 48) - 1)``; before,
  the upper half, ``PAGE_OFFSET = -2**(VA_BITS - 1)``.  Which layout a kernel has is
  told by where ``_stext`` is: in the upper half only with the flipped layout;
* a walk of the kernel page tables from ``swapper_pg_dir`` (found through
  ``kimage_voffset``): as many levels as the running VA size needs for 4K and 16K
  pages (what TCR_EL1 tells the MMU), the configured size for 64K pages (as drgn's
  ``arch_aarch64.c``), block mappings at any level but the last, and the output address
  in the LPA2 format (bits 51:50 in descriptor bits 9:8) when a 4K/16K kernel runs with
  52-bit VAs, in the 52-bit PA format of 64K pages (bits 51:48 in 15:12) otherwise.
"""

from __future__ import annotations

import struct
import weakref

from kdumpkit.dump.base import Dump
from kdumpkit.dump.errors import DumpError, PageNotPresentError
from kdumpkit.dump.vmcoreinfo import VmcoreInfo
from kdumpkit.kernel.vaspace import KernelAddressSpace, TranslationError

U64 = (1 << 64) - 1
#: Translations cached before the cache is dropped (bounds memory).
_TLB_LIMIT = 1 << 16
_TABLE_CACHE_LIMIT = 4096
#: Descriptor bits[1:0]: valid, and (below the last level) table vs block.
_VALID = 1
_TYPE_MASK = 3
_TYPE_TABLE_OR_PAGE = 3
_TYPE_BLOCK = 1
#: Output address bits of a descriptor without LPA2/LPA: 47..12.
_OA_48 = ((1 << 48) - 1) & ~0xFFF
#: LPA2 (4K/16K pages with 52-bit VAs): OA[49:shift] in place, OA[51:50] in bits 9:8.
_OA_LPA2_LOW = (1 << 50) - 1
#: 64K pages with 52-bit PAs (FEAT_LPA): OA[47:16] in place, OA[51:48] in bits 15:12.
_OA_64K = ((1 << 48) - 1) & ~0xFFFF
_PAGE_SIZES = (4096, 16384, 65536)


def _minus(bits: int) -> int:
    """``-2**bits`` as an unsigned 64-bit number (the start of a top-of-space range)."""
    return (-(1 << bits)) & U64


class AArch64AddressSpace(KernelAddressSpace):
    """The kernel's virtual address space of an arm64 dump."""

    def __init__(self, dump: Dump) -> None:
        info = dump.vmcoreinfo
        if info is None:
            raise DumpError(
                f"{dump.name}: the dump has no VMCOREINFO note, so kernel virtual addresses "
                "cannot be translated (QEMU dumps need -device vmcoreinfo)"
            )
        self.dump = dump
        self.info: VmcoreInfo = info
        va_bits = info.number("VA_BITS")
        kimage_voffset = info.number("kimage_voffset")
        phys_offset = info.number("PHYS_OFFSET")
        pgd = info.symbol("swapper_pg_dir")
        if va_bits is None or kimage_voffset is None or phys_offset is None or pgd is None:
            raise DumpError(
                f"{dump.name}: VMCOREINFO lacks what arm64 translation needs "
                "(NUMBER(VA_BITS), NUMBER(kimage_voffset), NUMBER(PHYS_OFFSET), "
                "SYMBOL(swapper_pg_dir))"
            )
        page_size = info.page_size or 4096
        if page_size not in _PAGE_SIZES or not 36 <= va_bits <= 52:
            raise DumpError(
                f"{dump.name}: impossible arm64 numbers: PAGESIZE={page_size}, VA_BITS={va_bits}"
            )
        self.page_size = page_size
        self.page_shift = page_size.bit_length() - 1
        #: The configured VA size (CONFIG_ARM64_VA_BITS).
        self.va_bits = va_bits
        t1sz = info.number("TCR_EL1_T1SZ")
        #: The VA size the kernel runs with (vabits_actual).
        self.va_bits_actual: int = 64 - t1sz if t1sz else va_bits
        self.kimage_voffset = kimage_voffset & U64
        self.phys_offset = phys_offset & U64
        self.kaslr_offset: int = info.kerneloffset or 0
        #: Pointer-authentication bits of kernel return addresses (0: none).
        self.pac_mask: int = (info.number("KERNELPACMASK") or 0) & U64
        stext = info.symbol("_stext")
        # Linux kernel commit 14c127c957c1 ("arm64: mm: Flip kernel VA space") (in
        # v5.4) put the linear map in the lower half and the image in the upper one.
        self.flipped_layout = stext is None or stext >= _minus(va_bits - 1)
        if self.flipped_layout:
            self.page_offset = _minus(va_bits)
            self.page_end = _minus(min(va_bits, 48) - 1)
        else:
            self.page_offset = _minus(va_bits - 1)
            self.page_end = 1 << 64
        # The MMU walks TTBR1 with the running size for 4K/16K pages; 64K kernels size
        # their tables for the configured one (TTBR1_BADDR_4852_OFFSET).
        self.walk_va_bits = va_bits if page_size == 65536 else self.va_bits_actual
        bits_per_level = self.page_shift - 3
        self.levels = -(-(self.walk_va_bits - self.page_shift) // bits_per_level)
        self._bits_per_level = bits_per_level
        #: Descriptors carry OA[51:50] in bits 9:8 (FEAT_LPA2).
        self.lpa2 = page_size != 65536 and self.va_bits_actual == 52
        self.pgd_vaddr = pgd
        self.pgd_paddr = self.kimage_v2p(pgd)
        self._tlb: dict[int, int] = {}
        self._table_cache: dict[int, tuple[int, ...]] = {}

    # --- regions ------------------------------------------------------------------------

    def is_linear(self, vaddr: int) -> bool:
        """Whether ``vaddr`` is in the linear map of physical memory."""
        return self.page_offset <= vaddr < self.page_end

    def kimage_v2p(self, vaddr: int) -> int:
        """The physical address of a kernel image address (``__kimg_to_phys``)."""
        return (vaddr - self.kimage_voffset) & U64

    def is_kernel_text(self, vaddr: int) -> bool:
        """False: the image is translated by the page tables (KASLR places it anywhere
        in the vmalloc area, next to other mappings)."""
        return False

    def strip_pac(self, address: int) -> int:
        """A kernel return address without its pointer-authentication code."""
        return address | self.pac_mask if self.pac_mask else address

    # --- translation --------------------------------------------------------------------

    def v2p(self, vaddr: int) -> int:
        """The physical address of kernel virtual address ``vaddr``."""
        if self.is_linear(vaddr):
            return (vaddr - self.page_offset + self.phys_offset) & U64
        page = vaddr >> self.page_shift
        cached = self._tlb.get(page)
        if cached is not None:
            return cached | (vaddr & (self.page_size - 1))
        paddr = self.walk(vaddr)
        if len(self._tlb) >= _TLB_LIMIT:
            self._tlb.clear()
        self._tlb[page] = paddr & ~(self.page_size - 1)
        return paddr

    def p2v(self, paddr: int) -> int:
        """The linear-map virtual address of physical address ``paddr``."""
        return (paddr - self.phys_offset + self.page_offset) & U64

    def walk(self, vaddr: int) -> int:
        """Translate ``vaddr`` by walking the page tables (no fast paths)."""
        return self.leaf(vaddr)[0]

    def leaf(self, vaddr: int) -> tuple[int, int]:
        """(physical address of ``vaddr``, size of the mapping that holds it), by a walk."""
        if not 0 <= vaddr <= U64:
            raise TranslationError(vaddr & U64, "not a 64-bit address")
        va_bits = self.walk_va_bits
        if vaddr >> va_bits != U64 >> va_bits:
            raise TranslationError(vaddr, f"not a kernel address for {va_bits}-bit VAs")
        bits = self._bits_per_level
        shift = self.page_shift + (self.levels - 1) * bits
        table_paddr = self.pgd_paddr
        for level in range(self.levels):
            index_bits = va_bits - shift if level == 0 else bits
            index = (vaddr >> shift) & ((1 << index_bits) - 1)
            name = f"level {4 - self.levels + level}"
            try:
                entry = self._table(table_paddr)[index]
            except PageNotPresentError as exc:
                raise TranslationError(
                    vaddr, f"{name} table at physical {table_paddr:#x} is {exc.reason} in the dump"
                ) from None
            if not entry & _VALID:
                raise TranslationError(vaddr, f"{name} entry {index} is not valid")
            last = level == self.levels - 1
            kind = entry & _TYPE_MASK
            if last and kind != _TYPE_TABLE_OR_PAGE:
                raise TranslationError(vaddr, f"{name} entry {index} is reserved")
            if last or kind == _TYPE_BLOCK:
                size = 1 << shift
                return (self._output_address(entry) & ~(size - 1)) | (vaddr & (size - 1)), size
            table_paddr = self._output_address(entry) & ~(self.page_size - 1)
            shift -= bits
        raise AssertionError("unreachable")

    def _output_address(self, entry: int) -> int:
        if self.lpa2:
            return (entry & _OA_LPA2_LOW & ~0xFFF) | ((entry >> 8) & 3) << 50
        if self.page_size == 65536:
            return (entry & _OA_64K) | ((entry >> 12) & 0xF) << 48
        return entry & _OA_48

    def _table(self, paddr: int) -> tuple[int, ...]:
        table = self._table_cache.get(paddr)
        if table is None:
            data = self.dump.read(paddr, self.page_size)
            table = struct.unpack(f"<{self.page_size // 8}Q", data)
            if len(self._table_cache) >= _TABLE_CACHE_LIMIT:
                self._table_cache.clear()
            self._table_cache[paddr] = table
        return table


_spaces: weakref.WeakKeyDictionary[Dump, AArch64AddressSpace] = weakref.WeakKeyDictionary()


def address_space(dump: Dump) -> AArch64AddressSpace:
    """The kernel address space of an arm64 ``dump``, created once per dump object."""
    space = _spaces.get(dump)
    if space is None:
        space = AArch64AddressSpace(dump)
        _spaces[dump] = space
    return space
