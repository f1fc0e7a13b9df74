"""The arm64 dumps that ``testbed/arm64`` makes (cached under
``$KDUMPKIT_CACHE/testbed-arm64``), and its arm64 reference tools run under
qemu-user.  Each helper skips the calling test, saying why, when what it needs is not
there (``make -C testbed/arm64`` / ``testbed/arm64/run-all.sh`` makes it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("KDUMPKIT_CACHE", ROOT / ".cache"))
TESTBED = CACHE / "testbed-arm64"
KVER_6_1 = "6.1.0-56-cloud-arm64"
KVER_6_12 = "6.12.117+deb12-cloud-arm64"


def arm64_dir(name: str) -> Path:
    """A dump folder of the arm64 testbed (``kdump-<kver>-load``, ``qemu-<kver>-fwcfg``...),
    or skip."""
    path = TESTBED / name
    if not path.is_dir():
        pytest.skip(f"arm64 testbed dumps not made ({path}); run testbed/arm64/run-all.sh")
    return path


def arm64_file(folder: str, name: str) -> Path:
    """One file of an arm64 dump folder, or skip."""
    path = arm64_dir(folder) / name
    if not path.exists():
        pytest.skip(f"{path} not made by the arm64 testbed")
    return path


def arm64_vmlinux(kver: str) -> Path | None:
    """The DWARF vmlinux of an arm64 kernel (from its -dbg package), if cached."""
    path = TESTBED / "arm64/kernels" / kver / "usr/lib/debug/boot" / f"vmlinux-{kver}"
    return path if path.exists() else None


def _sid_arm64(binary: str) -> list[str]:
    tools = TESTBED / "arm64/tools-sid"
    qemu = shutil.which("qemu-aarch64-static")
    ldso = tools / "LDSO"
    if qemu is None or not ldso.exists() or not (tools / binary).exists():
        pytest.skip(f"sid's arm64 {binary} or qemu-aarch64-static is not there")
    libs = f"{tools}/lib/aarch64-linux-gnu:{tools}/usr/lib/aarch64-linux-gnu"
    loader = str(tools / ldso.read_text().strip())
    return [qemu, loader, "--library-path", libs, str(tools / binary)]


def makedumpfile_178_arm64() -> list[str]:
    """argv of sid's arm64 makedumpfile 1.7.8 under qemu-user, or skip."""
    return _sid_arm64("usr/bin/makedumpfile")


def crash_9_arm64() -> list[str]:
    """argv of sid's arm64 crash 9.0.2 under qemu-user, or skip."""
    return _sid_arm64("usr/bin/crash")
