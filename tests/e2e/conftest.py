"""Fixtures for the end-to-end tests: real kdump cycles and QEMU dumps of Debian kernels.

The kernels come from ``KDUMPKIT_E2E_KERNELS`` (default ``6.1``; ``make e2e`` sets
``"6.1 6.12"``). Each cycle runs once per session; its stage times are printed in the
terminal summary. Tests skip with the reason when QEMU or the Debian mirror is missing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from testbed_support import testbed

E2E_KERNELS = os.environ.get("KDUMPKIT_E2E_KERNELS", "6.1").split()
_timings: list[str] = []


def prepared_kernel(series: str) -> testbed.Kernel:
    """Debian's ``series`` kernel and initramfs, or skip the test saying why."""
    try:
        return testbed.prepare_kernel(series)
    except testbed.TestbedUnavailable as exc:
        pytest.skip(f"testbed unavailable: {exc}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cycle_dir(series: str) -> Path:
    """A fresh .cache/testbed/e2e/<series>-<pid> folder; those of finished sessions go.

    Not pytest's tmp_path: the basetemp is shared with every other pytest on this machine,
    and their clean-up may remove it while QEMU writes to it. The last run's files stay for
    inspection until the next session.
    """
    base = testbed.CACHE / "e2e"
    base.mkdir(parents=True, exist_ok=True)
    for old in base.glob(f"{series}-*"):
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    out = base / f"{series}-{os.getpid()}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    return out


@pytest.fixture(scope="session", params=E2E_KERNELS, ids=lambda s: f"linux-{s}")
def kdump_cycle(request: pytest.FixtureRequest) -> testbed.CycleResult:
    """One real kdump cycle (kdumpkit load, sysrq-c, kdumpkit collect) on a Debian kernel."""
    kernel = prepared_kernel(request.param)
    out = cycle_dir(request.param)
    result = testbed.run_kdump_cycle(kernel, out)
    _timings.append(
        f"{kernel.release}: loader={result.loader} collector={result.collector}\n"
        f"{result.timing_text()}"
    )
    return result


#: The big guest: its memory and how much of it the workload fills (MiB).
BIG_GUEST_MIB, BIG_WORKLOAD_MIB = 4096, 2457
#: Room left beside the big dump: makedumpfile's output (1.1 GB at -d 1) and the rest.
BIG_DISK_MARGIN_MIB = 3072


@pytest.fixture(scope="session", params=E2E_KERNELS, ids=lambda s: f"linux-{s}")
def big_guest_dump(request: pytest.FixtureRequest) -> Path:
    """The whole /proc/vmcore of a busy 4 GiB guest (testbed/vm.py big-dump), made once
    into .cache/testbed/big/<release>-4096M/vmcore.elf (~70 s under TCG, 4 GB) and reused."""
    kernel = prepared_kernel(request.param)
    out = testbed.CACHE / "big" / f"{kernel.release}-{BIG_GUEST_MIB}M"
    vmcore = out / "vmcore.elf"
    if not vmcore.is_file():
        # The dump is the guest's whole memory, written uncompressed: see that it fits.
        out.parent.mkdir(parents=True, exist_ok=True)
        need = (BIG_GUEST_MIB + BIG_DISK_MARGIN_MIB) << 20
        free = shutil.disk_usage(out.parent).free
        if free < need:
            pytest.skip(
                f"the big-guest dump needs {need >> 20} MiB free in {out.parent}, "
                f"{free >> 20} MiB are"
            )
        vmcore = testbed.run_big_dump(kernel, out, BIG_GUEST_MIB, BIG_WORKLOAD_MIB)
        _timings.append(f"{kernel.release}: big guest dump made ({vmcore.stat().st_size} bytes)")
    return vmcore


@pytest.fixture(scope="session", params=E2E_KERNELS, ids=lambda s: f"linux-{s}")
def live_guest(request: pytest.FixtureRequest) -> testbed.LiveResult:
    """A running guest analysed through /proc/kcore by kdumpkit crash and report (~30 s)."""
    kernel = prepared_kernel(request.param)
    return testbed.run_live(kernel, cycle_dir(f"live-{request.param}"))


@pytest.fixture(scope="session")
def qemu_dumps_61() -> dict[str, Path]:
    """QEMU ``dump-guest-memory`` dumps of Debian 6.1 (made once into .cache/testbed)."""
    kernel = prepared_kernel("6.1")
    return testbed.qemu_dumps_cached(kernel)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print each kdump cycle's stage times."""
    if _timings:
        terminalreporter.section("kdump cycle timings (QEMU TCG)")
        for text in _timings:
            terminalreporter.write_line(text)
