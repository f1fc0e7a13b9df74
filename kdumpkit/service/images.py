"""The capture kernel and initramfs: which files, and what loading them costs.

x86 boot protocol (Documentation/arch/x86/boot.rst): a bzImage has ``HdrS`` at 0x202,
the protocol version at 0x206, ``xloadflags`` at 0x236 (bit 0: 64-bit entry point) and,
from protocol 2.10, ``init_size`` at 0x260: the memory the kernel needs from its load
address until it runs, decompressor and bss included.  kexec_file_load on x86_64 only
takes a bzImage of protocol >= 2.12 with a 64-bit entry.  A UEFI-bootable bzImage is
also a PE/COFF file; its Authenticode signature is the certificate table (data
directory 4), which kexec_file_load verifies when signatures are required.

arm64 boot protocol (Documentation/arch/arm64/booting.rst): an ``Image`` has the magic
``ARM\x64`` at 0x38, its effective size (bss included) at 0x10 and flags at 0x18 (bit 0
big-endian).  kexec_file_load on arm64 takes a little-endian Image; Debian's arm64 vmlinuz
is one, which is also a signed PE/COFF EFI application.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from kdumpkit.config import Config
from kdumpkit.service.host import Host

#: arm64 Image magic at offset 0x38
ARM64_IMAGE_MAGIC = b"ARM\x64"
#: compressed-to-unpacked ratio assumed when the compressed stream does not say
INITRD_RATIO = 3
_COMPRESSED_MAGICS = {
    b"\x1f\x8b": "gzip",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"\xfd7zXZ\x00": "xz",
    b"\x02\x21\x4c\x18": "lz4",
    b"BZh": "bzip2",
    b"\x5d\x00\x00": "lzma",
    b"\x89LZO": "lzo",
}


@dataclass(frozen=True)
class KernelImage:
    """What a kernel file is and what loading it needs."""

    path: str
    file_size: int
    bzimage: bool
    protocol: int = 0
    init_size: int = 0
    kernel_64: bool = False
    signed: bool = False
    #: An arm64 little-endian ``Image`` (``init_size`` is then its effective size).
    arm64_image: bool = False

    @property
    def kind(self) -> str:
        """How the boot protocol names the image."""
        return "arm64 Image" if self.arm64_image else "bzImage"

    @property
    def file_loadable(self) -> bool:
        """Whether kexec_file_load (x86_64 bzImage64 loader, arm64 Image loader) accepts
        this image."""
        if self.arm64_image:
            return True
        return self.bzimage and self.protocol >= 0x20C and self.kernel_64

    @property
    def memory_needed(self) -> int:
        """Bytes the kernel occupies in the reservation while it starts."""
        return self.init_size or 4 * self.file_size


@dataclass(frozen=True)
class InitrdImage:
    """An initramfs file: its size and the memory its unpacked contents take."""

    path: str
    file_size: int
    unpacked_size: int
    how: str


def inspect_kernel(host_path: str, shown_path: str | None = None) -> KernelImage:
    """Read a kernel file's boot header (OSError when it cannot be read)."""
    with open(host_path, "rb") as file:
        header = file.read(0x270)
        size = os.fstat(file.fileno()).st_size
        shown = shown_path or host_path
        if len(header) >= 0x40 and header[0x38:0x3C] == ARM64_IMAGE_MAGIC:
            image_size, flags = struct.unpack_from("<QQ", header, 0x10)
            return KernelImage(
                shown,
                size,
                bzimage=False,
                init_size=image_size,
                kernel_64=True,
                signed=_pe_signed(file, header),
                arm64_image=not flags & 1,
            )
        if len(header) < 0x264 or header[0x202:0x206] != b"HdrS":
            return KernelImage(shown, size, bzimage=False)
        protocol = struct.unpack_from("<H", header, 0x206)[0]
        xloadflags = struct.unpack_from("<H", header, 0x236)[0] if protocol >= 0x20C else 0
        init_size = struct.unpack_from("<I", header, 0x260)[0] if protocol >= 0x20A else 0
        return KernelImage(
            shown,
            size,
            True,
            protocol,
            init_size,
            kernel_64=bool(xloadflags & 1),
            signed=_pe_signed(file, header),
        )


def _pe_signed(file, header: bytes) -> bool:  # type: ignore[no-untyped-def]
    """Whether the PE/COFF image has a non-empty certificate table."""
    if header[:2] != b"MZ":
        return False
    pe_offset = struct.unpack_from("<I", header, 0x3C)[0]
    file.seek(pe_offset)
    pe = file.read(24 + 144 + 8)
    if len(pe) < 24 + 2 or pe[:4] != b"PE\0\0":
        return False
    magic = struct.unpack_from("<H", pe, 24)[0]
    # data directories start 96 (PE32) or 112 (PE32+) bytes into the optional header
    entry = 24 + (112 if magic == 0x20B else 96) + 4 * 8
    if len(pe) < entry + 8:
        return False
    address, length = struct.unpack_from("<II", pe, entry)
    return address != 0 and length != 0


def inspect_initrd(host_path: str, shown_path: str | None = None) -> InitrdImage:
    """Size an initramfs and estimate its unpacked size (OSError when unreadable).

    Uncompressed cpio parts (early microcode) are walked header by header; a
    compressed part runs to the end of the file and is sized from its own header or
    trailer (gzip ISIZE, zstd frame content size) or, failing that, as INITRD_RATIO
    times its compressed size.
    """
    with open(host_path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        position = unpacked = 0
        how = "uncompressed cpio"
        while position < size:
            file.seek(position)
            head = file.read(8)
            if head[:6] in (b"070701", b"070702"):
                end = _cpio_end(file, position, size)
                unpacked += end - position
                position = end
                continue
            if head[:1] == b"\0":
                # padding between archives: skip the run of zeros a block at a time
                file.seek(position)
                block = file.read(1 << 16)
                position += max(1, len(block) - len(block.lstrip(b"\0")))
                continue
            kind = next(
                (name for magic, name in _COMPRESSED_MAGICS.items() if head.startswith(magic)), None
            )
            if kind is None:
                return InitrdImage(
                    shown_path or host_path,
                    size,
                    unpacked + size - position,
                    "unrecognised data counted as is",
                )
            known = _stated_size(file, kind, position, size)
            if known is not None:
                unpacked += known
                how = f"{kind}, size from its header"
            else:
                unpacked += INITRD_RATIO * (size - position)
                how = f"{kind}, assumed {INITRD_RATIO}x"
            break
        return InitrdImage(shown_path or host_path, size, unpacked, how)


def _cpio_end(file, position: int, size: int) -> int:  # type: ignore[no-untyped-def]
    """The offset after a newc cpio archive's TRAILER!!! entry."""
    while position + 110 <= size:
        file.seek(position)
        header = file.read(110)
        try:
            file_size = int(header[54:62], 16)
            name_size = int(header[94:102], 16)
        except ValueError:
            return size
        name = file.read(name_size).rstrip(b"\0")
        position += (110 + name_size + 3) & ~3
        position += (file_size + 3) & ~3
        if name == b"TRAILER!!!":
            return position
    return size


def _stated_size(file, kind: str, position: int, size: int) -> int | None:  # type: ignore[no-untyped-def]
    """The uncompressed size a stream declares, when it declares one cheaply."""
    if kind == "gzip" and size - position > 18:
        file.seek(size - 4)
        isize = struct.unpack("<I", file.read(4))[0]
        # ISIZE is modulo 4 GiB and only covers the last member; trust it when plausible
        return isize if isize >= size - position else None
    if kind == "zstd":
        file.seek(position + 4)
        frame = file.read(14)
        if not frame:
            return None
        descriptor = frame[0]
        fcs_flag, single_segment, dict_flag = descriptor >> 6, (descriptor >> 5) & 1, descriptor & 3
        fcs_bytes = (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
        if fcs_bytes == 0:
            return None
        offset = 1 + (0 if single_segment else 1) + (0, 1, 2, 4)[dict_flag]
        value = int.from_bytes(frame[offset : offset + fcs_bytes], "little")
        return value + 256 if fcs_bytes == 2 else value
    return None


def kernel_candidates(host: Host, config: Config, override: str | None = None) -> list[str]:
    """Capture kernel paths to try, best first: --kernel, the config, the running kernel's."""
    if override or config.kernel:
        return [override or config.kernel or ""]
    release = host.kernel_release()
    return [
        f"/boot/vmlinuz-{release}",
        f"/lib/modules/{release}/vmlinuz",
        f"/usr/lib/modules/{release}/vmlinuz",
    ]


def initrd_candidates(host: Host, config: Config, override: str | None = None) -> list[str]:
    """Initramfs paths to try, best first: --initrd, the config, Debian's then Fedora's name."""
    if override or config.initrd:
        return [override or config.initrd or ""]
    release = host.kernel_release()
    return [
        f"/boot/initrd.img-{release}",
        f"/boot/initramfs-{release}.img",
        f"/boot/initrd-{release}",
    ]


def first_existing(host: Host, candidates: list[str]) -> str | None:
    """The first candidate that exists on the machine."""
    return next((path for path in candidates if host.path(path).is_file()), None)
