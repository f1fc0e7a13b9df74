"""QEMU's own dumps (``dump-guest-memory``) of a panicked Debian 6.1 guest, with and without
VMCOREINFO, in ELF, flattened kdump-zlib and reassembled kdump form: kdumpkit reads them all
and they hold the same memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from testbed_support import ROOT, testbed

from kdumpkit.dump.open import open_dump

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def dumps(request: pytest.FixtureRequest) -> dict[str, Path]:
    """The QEMU dumps. Making them boots QEMU twice: `make e2e` does (or
    `python3 testbed/vm.py qemu-dumps 6.1`); a plain `make test` uses them only when cached."""
    cached = list((testbed.CACHE / "qemu-dumps").glob("6.1*-novmcoreinfo/vmcore.qemu.flat"))
    if not cached and "KDUMPKIT_E2E_KERNELS" not in os.environ:
        pytest.skip("QEMU dumps not cached: `make e2e` or `python3 testbed/vm.py qemu-dumps 6.1`")
    return request.getfixturevalue("qemu_dumps_61")


@pytest.mark.parametrize("form", ["elf", "flat", "kdump"])
def test_vmcoreinfo_reaches_the_dump(dumps: dict[str, Path], form: str) -> None:
    key = f"vmcoreinfo/{form}"
    if key not in dumps:
        pytest.skip(f"{key} not made (makedumpfile missing?)")
    with open_dump(dumps[key]) as dump:
        assert dump.vmcoreinfo is not None
        assert dump.vmcoreinfo.osrelease.startswith("6.1.")
        assert dump.page_size == 4096


@pytest.mark.parametrize("form", ["elf", "flat", "kdump"])
def test_no_vmcoreinfo_without_the_device(dumps: dict[str, Path], form: str) -> None:
    key = f"novmcoreinfo/{form}"
    if key not in dumps:
        pytest.skip(f"{key} not made (makedumpfile missing?)")
    with open_dump(dumps[key]) as dump:
        assert dump.vmcoreinfo is None


def test_elf_and_kdump_hold_the_same_memory(dumps: dict[str, Path]) -> None:
    if "vmcoreinfo/kdump" not in dumps:
        pytest.skip("vmcoreinfo/kdump not made (makedumpfile missing?)")
    with open_dump(dumps["vmcoreinfo/elf"]) as elf, open_dump(dumps["vmcoreinfo/kdump"]) as kdump:
        elf_present, kdump_present = elf.present_bitmap(), kdump.present_bitmap()
        common = min(len(elf_present), len(kdump_present))
        both = np.flatnonzero(elf_present[:common] & kdump_present[:common])
        assert len(both) > 1000
        for pfn in both[:: max(len(both) // 200, 1)]:
            assert elf.read_page(int(pfn)) == kdump.read_page(int(pfn)), hex(int(pfn))


def test_kdumpkit_dmesg_of_qemu_dump(dumps: dict[str, Path]) -> None:
    command = [sys.executable, "-m", "kdumpkit", "dmesg", str(dumps["vmcoreinfo/elf"])]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Kernel panic - not syncing: sysrq triggered crash" in done.stdout
    assert "TESTBED marker: kdumpkit testbed on 6.1." in done.stdout
