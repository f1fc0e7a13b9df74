"""A real Debian system on a disk image, made from Debian's packages, for the real-system cycle.

    python3 testbed/system/image.py base kdumpkit     # Debian 12, systemd, GRUB, linux-image-amd64
    python3 testbed/system/image.py base kdump-tools  # the same with Debian's kdump-tools
    python3 testbed/system/image.py wheels            # kdumpkit's wheel and its dependencies'

The base image is made without loop devices or mounts on the host: mmdebstrap builds the
root file system in a folder, ``mkfs.ext4 -d`` writes it into the partition of a raw disk
file (``-E offset=``), and a first boot of the image's own kernel (QEMU ``-kernel``) runs
``grub-install /dev/vda`` and ``update-grub`` for real, then powers off. From then on the
image boots as a machine does: SeaBIOS, GRUB from the disk's boot sector, the kernel and
initramfs from /boot. It is cached as ``.cache/system/<flavour>-<key>.qcow2``; every run
boots a copy-on-write overlay of it, so the base stays clean.

kdumpkit itself is not in the base image: a run installs it as README tells users to, from
the wheel built from this checkout and its dependencies' wheels (``wheels``), which reach
the guest on a second small disk (no network in the guest).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SYSTEM_DIR = Path(__file__).resolve().parent
PROJECT_DIR = SYSTEM_DIR.parent.parent
CACHE = Path(os.environ.get("KDUMPKIT_CACHE", PROJECT_DIR / ".cache")) / "system"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
DISK_BYTES = 6 * 1024**3
PART_OFFSET = 1024 * 1024  # the partition starts at 1 MiB, after GRUB's core image gap
HOSTNAME = "kdtb"

COMMON_PACKAGES = [
    "systemd-sysv", "udev", "dbus", "linux-image-amd64", "grub-pc", "initramfs-tools",
    "python3", "python3-venv", "kmod", "procps", "e2fsprogs", "zstd", "less", "util-linux",
]  # fmt: skip
FLAVOURS: dict[str, list[str]] = {
    "kdumpkit": [],
    "kdump-tools": ["kdump-tools", "makedumpfile", "kexec-tools"],
}

# Serial console: the cycle drives the machine through ttyS0 (autologin as root).
GRUB_DEFAULTS = """\
GRUB_DEFAULT=0
GRUB_TIMEOUT=1
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=ttyS0,115200n8"
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --speed=115200 --unit=0 --word=8 --parity=no --stop=1"
GRUB_DISABLE_OS_PROBER=true
"""
AUTOLOGIN = """\
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 %I $TERM
"""
FSTAB = "/dev/vda1 / ext4 errors=remount-ro 0 1\n"
# Run as init= on the first boot: install GRUB into the disk for real, then power off.
PROVISION = """\
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -o remount,rw /
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
echo "provision: grub-install"
kdump_initrd=true
if [ -x /etc/kernel/postinst.d/kdump-tools ]; then
    # kdump-tools' own initramfs (MODULES=dep) needs the real root device: made here
    kdump_initrd="/etc/kernel/postinst.d/kdump-tools $(ls /lib/modules | sort -V | tail -n1)"
fi
if grub-install --target=i386-pc /dev/vda && update-grub && $kdump_initrd; then
    echo "provision: done"
else
    echo "provision: FAILED"
fi
rm -f /usr/local/sbin/testbed-provision
sync
echo o > /proc/sysrq-trigger
sleep 60
"""


def log(message: str) -> None:
    print(f"[system {time.strftime('%T')}] {message}", file=sys.stderr, flush=True)


def image_key(flavour: str) -> str:
    """What the base image is made of: the suite, the package lists, the files written into
    it (package versions float with the mirror: delete the cache for a newer point release)."""
    made_of = (
        SUITE, COMMON_PACKAGES, FLAVOURS[flavour], GRUB_DEFAULTS, AUTOLOGIN, FSTAB, PROVISION,
        _customize_hooks(flavour), _essential_hooks(flavour, Path("debconf")),
    )  # fmt: skip
    return hashlib.sha256(repr(made_of).encode()).hexdigest()[:12]


def base_image_path(flavour: str) -> Path:
    return CACHE / f"{flavour}-{image_key(flavour)}.qcow2"


def _customize_hooks(flavour: str) -> list[str]:
    hooks = [
        f'echo {HOSTNAME} > "$1/etc/hostname"',
        f'printf "127.0.0.1 localhost\\n127.0.1.1 {HOSTNAME}\\n" > "$1/etc/hosts"',
        f"printf '{FSTAB}' > \"$1/etc/fstab\"",
        'chroot "$1" passwd -d root',
        'mkdir -p "$1/etc/systemd/system/serial-getty@ttyS0.service.d"',
        # the guest has no network: do not wait for it
        'chroot "$1" systemctl mask systemd-networkd-wait-online.service apt-daily.timer '
        "apt-daily-upgrade.timer e2scrub_reap.service man-db.timer >/dev/null 2>&1 || true",
        # grub-install and update-grub ran as no-ops in the chroot (no disk there)
        'rm -f "$1/usr/sbin/update-grub" "$1/usr/sbin/grub-install"',
        'chroot "$1" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-grub',
        'chroot "$1" dpkg-divert --quiet --local --rename --remove /usr/sbin/grub-install',
        'chroot "$1" update-initramfs -u -k all',
    ]
    if flavour == "kdump-tools":
        hooks.append(
            'chroot "$1" dpkg-divert --quiet --local --rename --remove '
            "/etc/kernel/postinst.d/kdump-tools"
        )
    return hooks


def _essential_hooks(flavour: str, debconf: Path) -> list[str]:
    """Before the packages are installed: grub-install and update-grub made no-ops (no
    disk in the chroot; the first boot runs them), and for kdump-tools its kernel hook
    (it builds an initramfs for the root device, which the chroot has not got) renamed
    where run-parts skips it."""
    hooks = [
        f'chroot "$1" debconf-set-selections < {debconf}',
        'chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-grub',
        'chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/grub-install',
        'ln -sf /bin/true "$1/usr/sbin/update-grub"',
        'ln -sf /bin/true "$1/usr/sbin/grub-install"',
    ]
    if flavour == "kdump-tools":
        hooks.append(
            'chroot "$1" dpkg-divert --quiet --local --rename --add '
            "/etc/kernel/postinst.d/kdump-tools"
        )
    return hooks


def build_base_image(flavour: str) -> Path:
    """Make (once) the base image of ``flavour``; return its path."""
    out = base_image_path(flavour)
    if out.exists():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="system-", dir=CACHE) as tmp:
        work = Path(tmp)
        root = work / "root"
        files = work / "files"
        files.mkdir()
        (files / "grub").write_text(GRUB_DEFAULTS)
        (files / "autologin.conf").write_text(AUTOLOGIN)
        (files / "provision").write_text(PROVISION)
        packages = ",".join(COMMON_PACKAGES + FLAVOURS[flavour])
        debconf = work / "debconf"
        debconf.write_text(
            "grub-pc grub-pc/install_devices multiselect\n"
            "grub-pc grub-pc/install_devices_empty boolean true\n"
            "kdump-tools kdump-tools/use_kdump boolean true\n"
        )
        command = [
            "mmdebstrap", "--variant=minbase", "--mode=root", f"--include={packages}",
            *(f"--essential-hook={hook}" for hook in _essential_hooks(flavour, debconf)),
            "--customize-hook=mkdir -p \"$1/etc/default\"",
            f"--customize-hook=cp {files / 'grub'} \"$1/etc/default/grub\"",
            *(f"--customize-hook={hook}" for hook in _customize_hooks(flavour)),
            f"--customize-hook=cp {files / 'autologin.conf'} "
            "\"$1/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf\"",
            f"--customize-hook=install -m 0755 {files / 'provision'} "
            "\"$1/usr/local/sbin/testbed-provision\"",
            SUITE, str(root), MIRROR,
        ]  # fmt: skip
        log(f"mmdebstrap {SUITE} ({flavour}) into {root}")
        subprocess.run(command, check=True, stdout=sys.stderr)
        raw = work / "disk.raw"
        write_disk(root, raw)
        kernel = sorted((root / "boot").glob("vmlinuz-*"))[-1]
        initrd = root / "boot" / kernel.name.replace("vmlinuz", "initrd.img")
        log("first boot: grub-install /dev/vda, update-grub")
        provision_boot(raw, kernel, initrd, work / "provision.log")
        qcow = work / "disk.qcow2"
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(qcow)], check=True)
        qcow.rename(out)
        shutil.rmtree(root, ignore_errors=True)
    log(f"{out} made in {time.monotonic() - started:.0f}s")
    return out


def write_disk(root: Path, raw: Path) -> None:
    """A raw disk: an MBR with one bootable Linux partition at 1 MiB, ext4 made from ``root``."""
    with raw.open("wb") as disk:
        disk.truncate(DISK_BYTES)
    table = f"label: dos\nstart={PART_OFFSET // 512}, type=83, bootable\n"
    subprocess.run(["sfdisk", "-q", str(raw)], input=table, text=True, check=True)
    blocks = (DISK_BYTES - PART_OFFSET) // 4096
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-b", "4096", "-L", "root", "-E", f"offset={PART_OFFSET}",
         "-d", str(root), str(raw), str(blocks)],
        check=True,
    )  # fmt: skip


def provision_boot(raw: Path, kernel: Path, initrd: Path, console: Path) -> None:
    """Boot the disk's own kernel once with the provisioning script as init."""
    command = [
        "qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", "1024", "-smp", "2",
        "-nodefaults", "-display", "none", "-serial", f"file:{console}", "-no-reboot",
        "-kernel", str(kernel), "-initrd", str(initrd),
        "-append", "root=/dev/vda1 rw console=ttyS0 init=/usr/local/sbin/testbed-provision",
        "-drive", f"file={raw},format=raw,if=virtio",
    ]  # fmt: skip
    subprocess.run(command, check=True, timeout=900)
    text = console.read_text(errors="replace")
    if "provision: done" not in text:
        tail = "\n".join(text.splitlines()[-20:])
        raise RuntimeError(f"provisioning failed; console ({console}):\n{tail}")


def build_wheelhouse(out: Path) -> Path:
    """kdumpkit's wheel built from this checkout, and its dependencies' wheels, in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("kdumpkit-*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "build", "--wheel", "--outdir", tmp, str(PROJECT_DIR)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        wheel = next(Path(tmp).glob("kdumpkit-*.whl"))
        # The guest's Python is Debian 12's 3.11, the same minor version as this host's.
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(out), str(wheel)],
            check=True,
        )
    return out


def wheel_disk(wheels: Path, raw: Path) -> Path:
    """A small ext4 disk image (no partition table) holding the wheels."""
    size = sum(p.stat().st_size for p in wheels.iterdir()) + 64 * 1024**2
    with raw.open("wb") as disk:
        disk.truncate(size)
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-L", "wheels", "-d", str(wheels), str(raw)], check=True
    )
    return raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    base = sub.add_parser("base")
    base.add_argument("flavour", choices=sorted(FLAVOURS))
    sub.add_parser("wheels")
    args = parser.parse_args(argv)
    if args.what == "base":
        print(build_base_image(args.flavour))
    else:
        print(build_wheelhouse(CACHE / "wheels"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
