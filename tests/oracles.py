"""The reference tools the tests compare against, as ``scripts/fetch-oracles.sh`` caches
them under ``.cache/oracle`` (``make test`` runs it): Debian sid's crash 9.0.2 and
makedumpfile 1.7.8, run with their own loader and libraries, and the DWARF vmlinux of
the fixture's kernel.  Each helper skips the calling test, saying why, when its tool
is not there.

The testbed's inputs (``python3 testbed/build.py``: kdump cycles and QEMU dumps of each
kernel series, with crash 9.0.2's outputs) are under ``.cache/oracle`` too; ``testbed.json``
there names each series' release. :func:`built_folder` and :func:`built_release` find them,
or skip saying what was not checked and which command checks it; under ``KDUMPKIT_STRICT=1``
(``make e2e``) a missing input fails the test instead."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NoReturn

import pytest

# As tests/conftest.py computes it (not imported from there: tests/e2e has a conftest too).
CACHE = Path(os.environ.get("KDUMPKIT_CACHE", Path(__file__).resolve().parent.parent / ".cache"))

ORACLE = CACHE / "oracle"
FIXTURE_RELEASE = "6.1.0-56-cloud-amd64"
#: Set by ``make e2e``: a missing input is a failure, not a skip.
STRICT = os.environ.get("KDUMPKIT_STRICT") == "1"
#: What ``make test`` prints after each group of skipped tests: the command that runs them.
CHECK_ALL = "make e2e"


def missing_input(what: str, build: str = "python3 testbed/build.py") -> NoReturn:
    """Skip (fail under KDUMPKIT_STRICT=1) because an input is not there; the reason names
    what was not checked and the command that makes the input."""
    reason = f"{what} [make it: {build}]"
    if STRICT:
        pytest.fail(f"missing input (KDUMPKIT_STRICT=1): {reason}", pytrace=False)
    pytest.skip(reason)


def testbed_manifest() -> dict[str, dict[str, object]]:
    """testbed.json: series -> release, package version, folders (empty if not built)."""
    try:
        return json.loads((ORACLE / "testbed.json").read_text())
    except (OSError, ValueError):
        return {}


def built_release(series: str) -> str:
    """The Debian release the testbed built for ``series`` ("6.12" -> "6.12.118+deb12-cloud-
    amd64"), or skip."""
    entry = testbed_manifest().get(series)
    if entry is None:
        missing_input(
            f"the testbed's {series} kernel", f"python3 testbed/build.py --kernels {series}"
        )
    return str(entry["release"])


def built_folder(series: str, product: str, *files: str) -> Path:
    """The folder of a testbed product ("kdump-load", "qemu-fwcfg", "qemu-nofwcfg") of
    ``series``, with ``files`` (relative to it) present, or skip."""
    entry = testbed_manifest().get(series)
    folders = entry.get("folders", {}) if entry else {}
    folder = ORACLE / str(folders[product]) if product in folders else None  # type: ignore[union-attr]
    if folder is None or not all((folder / f).exists() for f in files):
        missing_input(
            f"the testbed's {series} {product} dump" + (f" ({', '.join(files)})" if files else ""),
            f"python3 testbed/build.py --kernels {series}",
        )
    return folder


def built_vmlinux(series: str) -> Path:
    """The -dbg package's DWARF vmlinux of the testbed's ``series`` kernel, or skip."""
    release = built_release(series)
    path = ORACLE / "kernels" / release / "usr/lib/debug/boot" / f"vmlinux-{release}"
    if not path.is_file():
        missing_input(
            f"the DWARF vmlinux of {release}", f"python3 testbed/build.py --kernels {series}"
        )
    return path


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
        missing_input("crash 9.0.2 and the 6.1 -dbg vmlinux", "make oracles")
    return crash, vmlinux


def makedumpfile_178() -> list[str]:
    """argv of sid's makedumpfile 1.7.8 (with zstd), or skip."""
    mdf = _sid_tool("makedumpfile")
    if mdf is None:
        missing_input("makedumpfile 1.7.8", "make oracles")
    return mdf
