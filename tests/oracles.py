"""The reference tools the tests compare against, as ``scripts/fetch-oracles.sh`` caches
them under ``.cache/oracle`` (``make test`` runs it): Debian sid's crash 9.0.2 and
makedumpfile 1.7.8, run with their own loader and libraries, and the DWARF vmlinux of
the fixture's kernel.  Each helper skips the calling test, saying why, when its tool
is not there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# As tests/conftest.py computes it (not imported from there: tests/e2e has a conftest too).
CACHE = Path(os.environ.get("KDUMPKIT_CACHE", Path(__file__).resolve().parent.parent / ".cache"))

FIXTURE_RELEASE = "6.1.0-56-cloud-amd64"


def _sid_tool(name: str) -> list[str] | None:
    for tools in sorted(CACHE.glob("*/tools-sid")):
        loader, binary = tools / "usr/lib64/ld-linux-x86-64.so.2", tools / "usr/bin" / name
        if loader.exists() and binary.exists():
            libs = tools / "usr/lib/x86_64-linux-gnu"
            return [str(loader), "--library-path", str(libs), str(binary)]
    return None


def fixture_vmlinux() -> Path | None:
    """The DWARF vmlinux of the 6.1 fixture's kernel, if cached."""
    for kernels in sorted(CACHE.glob("*/kernels")):
        path = kernels / FIXTURE_RELEASE / "usr/lib/debug/boot" / f"vmlinux-{FIXTURE_RELEASE}"
        if path.exists():
            return path
    return None


def crash_9() -> tuple[list[str], Path]:
    """argv of crash 9.0.2 and the 6.1 fixture's DWARF vmlinux, or skip."""
    crash, vmlinux = _sid_tool("crash"), fixture_vmlinux()
    if crash is None or vmlinux is None:
        pytest.skip("crash 9.0.2 and the 6.1 -dbg vmlinux are not cached (make oracles)")
    return crash, vmlinux


def makedumpfile_178() -> list[str]:
    """argv of sid's makedumpfile 1.7.8 (with zstd), or skip."""
    mdf = _sid_tool("makedumpfile")
    if mdf is None:
        pytest.skip("makedumpfile 1.7.8 is not cached (make oracles)")
    return mdf
