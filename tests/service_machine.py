"""Simulated machines for the service tests: a temporary root with /proc, /sys, /boot, /etc.

The kernel is a synthetic bzImage with the real header fields kdumpkit reads (HdrS,
protocol, xloadflags, init_size, and a PE certificate table when signed); the
initramfs is a real newc cpio (like early microcode) followed by a gzip-compressed cpio.
"""

from __future__ import annotations

import gzip
import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path

RELEASE = "6.1.0-56-cloud-amd64"
MiB = 1 << 20

#: the options the checks look at, as the Debian 6.1 cloud kernel sets them
#: (fixture config-summary.txt), plus the ones it reports as not set
DEBIAN_CONFIG = """\
CONFIG_KEXEC=y
CONFIG_KEXEC_FILE=y
CONFIG_KEXEC_SIG=y
CONFIG_KEXEC_CORE=y
CONFIG_CRASH_CORE=y
CONFIG_CRASH_DUMP=y
CONFIG_PROC_VMCORE=y
CONFIG_SYSFS=y
CONFIG_KALLSYMS=y
CONFIG_DEBUG_INFO_BTF=y
CONFIG_UNWINDER_ORC=y
CONFIG_RANDOMIZE_BASE=y
# CONFIG_KEXEC_SIG_FORCE is not set
"""


def bzimage(init_size: int, signed: bool, size: int = 256 * 1024) -> bytes:
    """A file with a bzImage setup header (protocol 2.15, 64-bit) and a PE32+ header."""
    image = bytearray(size)
    image[0:2] = b"MZ"
    pe = 0x80
    struct.pack_into("<I", image, 0x3C, pe)
    image[pe : pe + 4] = b"PE\0\0"
    struct.pack_into("<H", image, pe + 24, 0x20B)
    if signed:
        struct.pack_into("<II", image, pe + 24 + 112 + 4 * 8, size - 0x600, 0x5C0)
    image[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", image, 0x206, 0x20F)
    struct.pack_into("<H", image, 0x236, 0x7F)
    struct.pack_into("<I", image, 0x260, init_size)
    return bytes(image)


def newc_cpio(files: dict[str, bytes]) -> bytes:
    """A newc cpio archive holding *files*, ending in TRAILER!!!."""
    out = bytearray()
    for number, (name, data) in enumerate([*files.items(), ("TRAILER!!!", b"")]):
        raw_name = name.encode() + b"\0"
        mode = 0o100644 if name != "TRAILER!!!" else 0
        fields = [number + 1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw_name), 0]
        out += b"070701" + b"".join(b"%08X" % value for value in fields)
        out += raw_name
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def initramfs(payload_bytes: int = 2 * MiB) -> tuple[bytes, int]:
    """An early cpio + gzip cpio initramfs and its exact unpacked size."""
    early = newc_cpio({"kernel/x86/microcode/GenuineIntel.bin": b"\x01" * 5000})
    padding = b"\0" * (-len(early) % 512)
    main = newc_cpio(
        {
            "init": b"#!/bin/sh\n",
            "bin/busybox": os.urandom(payload_bytes // 2) + b"\0" * (payload_bytes // 2),
        }
    )
    return early + padding + gzip.compress(main, compresslevel=1), len(early) + len(main)


@dataclass
class Machine:
    """Settings of a simulated machine; ``build(root)`` writes it."""

    cmdline: str = "BOOT_IMAGE=/boot/vmlinuz root=UUID=1234 ro quiet crashkernel=384M"
    crash_size: int | None = 384 * MiB
    crash_loaded: bool = False
    ram: int = 1023 * MiB
    cpus: str = "0-3"
    lockdown: str | None = "[none] integrity confidentiality"
    secure_boot: bool | None = None
    kernel_config: str | None = DEBIAN_CONFIG
    kernel_init_size: int | None = 60 * MiB
    kernel_signed: bool = True
    initrd: bool = True
    config_text: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def build(self, root: Path) -> Path:
        """Write the machine under *root* and return *root*."""

        def put(path: str, data: str | bytes) -> None:
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, str):
                target.write_text(data)
            else:
                target.write_bytes(data)

        put("/proc/sys/kernel/osrelease", RELEASE + "\n")
        put("/proc/cmdline", self.cmdline + "\n")
        put(
            "/proc/meminfo",
            f"MemTotal: {self.ram // 1024 - 40000} kB\n"
            f"MemFree: {self.ram // 2048} kB\nMemAvailable: {self.ram // 1536} kB\n",
        )
        iomem = [
            "00001000-0009fbff : System RAM",
            f"00100000-{0x100000 + self.ram - 0x9F000 - 1:08x} : System RAM",
        ]
        if self.crash_size:
            iomem.append(f"  2e000000-{0x2E000000 + self.crash_size - 1:08x} : Crash kernel")
        put("/proc/iomem", "\n".join(iomem) + "\n")
        put("/sys/devices/system/cpu/online", self.cpus + "\n")
        low, _, high = self.cpus.partition("-")
        put(
            "/proc/cpuinfo",
            "".join(
                f"processor\t: {n}\nvendor_id\t: GenuineIntel\napicid\t\t: {2 * n}\n\n"
                for n in range(int(low), int(high or low) + 1)
            ),
        )
        put("/proc/sys/kernel/sysrq", "176\n")
        put("/proc/sys/kernel/panic_on_oops", "1\n")
        put("/proc/sysrq-trigger", "")
        if self.crash_size is not None:
            put("/sys/kernel/kexec_crash_size", f"{self.crash_size}\n")
            put("/sys/kernel/kexec_crash_loaded", f"{int(self.crash_loaded)}\n")
            put("/sys/kernel/kexec_loaded", "0\n")
        if self.lockdown is not None:
            put("/sys/kernel/security/lockdown", self.lockdown + "\n")
        if self.secure_boot is not None:
            put(
                "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c",
                b"\x06\0\0\0" + bytes([int(self.secure_boot)]),
            )
        if self.kernel_config is not None:
            put(f"/boot/config-{RELEASE}", self.kernel_config)
        if self.kernel_init_size is not None:
            put(f"/boot/vmlinuz-{RELEASE}", bzimage(self.kernel_init_size, self.kernel_signed))
        if self.initrd:
            put(f"/boot/initrd.img-{RELEASE}", initramfs()[0])
        if self.config_text is not None:
            put("/etc/kdumpkit.toml", self.config_text)
        (root / "var" / "crash").mkdir(parents=True, exist_ok=True)
        for path, text in self.extra.items():
            put(path, text)
        return root


def fake_commands(folder: Path, names: dict[str, int]) -> Path:
    """Scripts that log their argv to ``folder/calls.log`` and exit with the given status."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, status in names.items():
        script = folder / name
        script.write_text(
            f'#!/bin/sh\necho "{name} $*" >> "{folder}/calls.log"\n'
            f'[ {status} -eq 0 ] || echo "{name}: simulated failure" >&2\n'
            f"exit {status}\n"
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder
