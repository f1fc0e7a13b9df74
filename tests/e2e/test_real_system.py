"""The real machine: kdumpkit installed from its wheel on a real Debian 12 system (systemd,
GRUB, Debian's kernel) under QEMU, through the whole kdump cycle, and Debian's kdump-tools
on the same system for comparison (testbed/system/).  Each stage's time is printed."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "testbed" / "system"))

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.long]

#: a cycle keeps a 6 GiB sparse disk overlay and the saved dumps
NEEDED_BYTES = 3 * 1024**3


def _cycle(flavour: str, out: Path) -> object:
    if shutil.which("mmdebstrap") is None or shutil.which("qemu-img") is None:
        pytest.fail("mmdebstrap and qemu-utils are needed (scripts/install-deps.sh)")
    if shutil.disk_usage(out).free < NEEDED_BYTES:
        pytest.skip(f"{out}: less than {NEEDED_BYTES >> 30} GiB free for a real-system cycle")
    import cycle

    report = cycle.CYCLES[flavour](out)
    print(json.dumps(report.stages, indent=1))
    (out / "stages.json").write_text(json.dumps(asdict(report), indent=2))
    return report


@pytest.fixture(scope="module")
def kdumpkit_cycle(tmp_path_factory: pytest.TempPathFactory) -> object:
    return _cycle("kdumpkit", tmp_path_factory.mktemp("system-kdumpkit"))


@pytest.fixture(scope="module")
def kdump_tools_cycle(tmp_path_factory: pytest.TempPathFactory) -> object:
    return _cycle("kdump-tools", tmp_path_factory.mktemp("system-kdump-tools"))


def test_install_setup_reboot_panic_capture_report_revert(kdumpkit_cycle: object) -> None:
    report = kdumpkit_cycle
    outputs: dict[str, str] = report.outputs  # type: ignore[attr-defined]
    assert (
        outputs["install"].strip().endswith("kdumpkit 0.1.0") or "kdumpkit " in outputs["install"]
    )
    # before setup: nothing reserved
    assert "FAIL" in outputs["check-before"] and "crashkernel" in outputs["check-before"]
    # setup ran the real update-grub and systemctl
    assert "running: update-grub" in outputs["setup"]
    assert "systemctl" in outputs["setup"] and "enable" in outputs["setup"]
    # after the reboot: reserved, loaded at boot by the unit, check all OK
    assert "crashkernel=" in outputs["cmdline"]
    assert outputs["load-unit"].strip() == "active"
    assert "FAIL" not in outputs["check-after"] and "ready for kdump" in outputs["check-after"]
    # the capture kernel saved the dump and the machine came back
    assert "kdumpkit collect: saved the dump to /var/crash/" in outputs["collect"]
    files = report.crash_files  # type: ignore[attr-defined]
    assert any(f.split("/")[-1].startswith("dump.") for f in files), files
    assert any(f.split("/")[-1].startswith("dmesg.") for f in files), files
    assert not any(f.endswith(".incomplete") for f in files), files
    assert "sysrq" in outputs["report"].lower()
    assert "saved dumps" in outputs["check-after-crash"]
    # the capture kernel brought up the CPUs the reservation pays for, and said what it used
    assert "nr_cpus=2" in outputs["status"] or "nr_cpus=2" in outputs["load-journal"]
    assert "peak memory" in outputs["collect"]


def test_power_cut_during_collect(kdumpkit_cycle: object) -> None:
    """QEMU killed while the capture kernel writes: the system boots, check names it."""
    outputs: dict[str, str] = kdumpkit_cycle.outputs  # type: ignore[attr-defined]
    assert "boot after the power cut" in kdumpkit_cycle.stages  # type: ignore[attr-defined]
    check = outputs["check-after-power-cut"]
    # cut while writing the dump (its .incomplete file on disk), or before the dump's
    # file reached the disk (the log alone): either way WARN, naming it
    saved = next(line for line in check.splitlines() if "saved dumps" in line)
    assert saved.startswith("WARN"), check
    assert ("cut short" in saved and ".incomplete" in saved) or "kernel log only" in saved


def test_full_dump_directory(kdumpkit_cycle: object) -> None:
    """/var/crash on a 6 MiB file system: the log is saved, the machine comes back."""
    outputs: dict[str, str] = kdumpkit_cycle.outputs  # type: ignore[attr-defined]
    assert "not enough free space" in outputs["collect-full"], outputs["collect-full"]
    listing = outputs["crash-dir-full"]
    assert "dmesg." in listing and "dump." not in listing.replace("dmesg.", ""), listing


def test_broken_config(kdumpkit_cycle: object) -> None:
    """A broken /etc/kdumpkit.toml: the load unit fails with one line, the boot goes on."""
    outputs: dict[str, str] = kdumpkit_cycle.outputs  # type: ignore[attr-defined]
    assert "reboot with a broken config" in kdumpkit_cycle.stages  # type: ignore[attr-defined]
    lines = outputs["load-broken-config"].splitlines()
    assert lines[0] == "failed", lines
    errors = [line for line in lines[1:] if line.startswith("kdumpkit load:")]
    assert len(errors) == 1 and "/etc/kdumpkit.toml" in errors[0], lines
    assert "Traceback" not in outputs["load-broken-config"]
    assert "FAIL" in outputs["check-broken-config"]


def test_revert_leaves_etc_as_it_was(kdumpkit_cycle: object) -> None:
    outputs: dict[str, str] = kdumpkit_cycle.outputs  # type: ignore[attr-defined]
    assert "reverted" in outputs["revert"]
    diff = kdumpkit_cycle.etc_diff  # type: ignore[attr-defined]
    assert diff == "", diff


def test_kdump_tools_on_the_same_system(kdump_tools_cycle: object) -> None:
    report = kdump_tools_cycle
    outputs: dict[str, str] = report.outputs  # type: ignore[attr-defined]
    assert "crashkernel=" in outputs["cmdline"]
    assert "ready to kdump" in outputs["status"]
    files = report.crash_files  # type: ignore[attr-defined]
    assert any(f.split("/")[-1].startswith("dump.") for f in files), files
