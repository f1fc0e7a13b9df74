"""``kdumpkit check`` and ``estimate`` on simulated machines, and on this one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from service_machine import RELEASE, Machine, MiB

from kdumpkit.cli.main import main
from kdumpkit.config import Config
from kdumpkit.service.checks import FAIL, OK, WARN, Finding, run_checks
from kdumpkit.service.crashkernel import parse_crashkernel
from kdumpkit.service.estimate import estimate_machine
from kdumpkit.service.host import Host


def findings_of(root: Path) -> dict[str, Finding]:
    return {finding.item: finding for finding in run_checks(Host(str(root)))}


def check_cli(root: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    status = main(["check", "--root", str(root), *extra])
    return status, capsys.readouterr().out


def test_ready_machine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Machine(crash_loaded=True).build(tmp_path)
    status, out = check_cli(tmp_path, capsys)
    assert status == 0, out
    assert out.rstrip().endswith("ready for kdump")
    items = findings_of(tmp_path)
    assert {f.status for f in items.values()} == {OK}
    assert items["reservation"].message.startswith("384M reserved")
    assert items["crashkernel="].message == "crashkernel=384M: 384M for 1023 MiB of RAM"
    (tmp_path / "proc/sys/kernel/panic_on_oops").write_text("0\n")
    item = findings_of(tmp_path)["panic_on_oops"]
    assert item.status == WARN and item.fix.startswith("sysctl -w kernel.panic_on_oops=1")


def test_no_reservation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Machine(cmdline="root=/dev/vda1 ro quiet", crash_size=0).build(tmp_path)
    status, out = check_cli(tmp_path, capsys)
    assert status == 1
    items = findings_of(tmp_path)
    assert items["crashkernel="].status == FAIL
    assert items["crashkernel="].message == "not on the kernel command line"
    assert "kdumpkit setup --apply (crashkernel=" in items["crashkernel="].fix
    assert items["reservation"].message == "nothing reserved: no crashkernel= given"
    assert items["capture kernel"].status == FAIL
    assert "NOT ready for kdump (3 FAIL): not on the kernel command line" in out


def test_reservation_failed_at_boot(tmp_path: Path) -> None:
    Machine(crash_size=0).build(tmp_path)
    item = findings_of(tmp_path)["reservation"]
    assert item.status == FAIL and "the kernel could not place it" in item.message


def test_reservation_too_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 60 MiB init_size + a ~1 MiB initramfs do not fit in 48M
    Machine(cmdline="root=/dev/vda1 crashkernel=48M", crash_size=48 * MiB, crash_loaded=True).build(
        tmp_path
    )
    status, _ = check_cli(tmp_path, capsys)
    item = findings_of(tmp_path)["reservation"]
    assert status == 1 and item.status == FAIL
    assert item.message.startswith("48M reserved, too small for the kernel (60 MiB to boot)")
    Machine(
        cmdline="root=/dev/vda1 crashkernel=128M", crash_size=128 * MiB, crash_loaded=True
    ).build(tmp_path)
    item = findings_of(tmp_path)["reservation"]
    assert item.status == WARN and "may run out of memory" in item.message


def test_ranges_that_miss_this_machine(tmp_path: Path) -> None:
    Machine(cmdline="crashkernel=1G-4G:192M,4G-:256M", crash_size=0).build(tmp_path)
    item = findings_of(tmp_path)["crashkernel="]
    assert item.status == FAIL and "nothing for 1023 MiB of RAM" in item.message
    Machine(cmdline="crashkernel=1G-4G:oops", crash_size=0).build(tmp_path)
    item = findings_of(tmp_path)["crashkernel="]
    assert item.status == FAIL and "expected a size" in item.message


def test_missing_initramfs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Machine(initrd=False).build(tmp_path)
    status, out = check_cli(tmp_path, capsys)
    item = findings_of(tmp_path)["initramfs"]
    assert status == 1 and item.status == FAIL
    assert item.message.startswith(f"not found: /boot/initrd.img-{RELEASE}")
    assert "fix: build it (update-initramfs" in out
    # with a capture kernel loaded already, the missing file only matters for the next load
    Machine(initrd=False, crash_loaded=True).build(tmp_path / "loaded")
    status, _ = check_cli(tmp_path / "loaded", capsys)
    item = findings_of(tmp_path / "loaded")["initramfs"]
    assert status == 0 and item.status == WARN and "matters for the next" in item.message


def test_lockdown_with_unsigned_kernel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Machine(
        lockdown="none [integrity] confidentiality", secure_boot=True, kernel_signed=False
    ).build(tmp_path)
    status, _ = check_cli(tmp_path, capsys)
    item = findings_of(tmp_path)["signatures"]
    assert status == 1 and item.status == FAIL
    assert item.message == (
        f"lockdown=integrity, Secure Boot on: /boot/vmlinuz-{RELEASE} is not "
        "signed, kexec_file_load will refuse it (and kexec_load is disabled "
        "under lockdown)"
    )
    Machine(
        lockdown="none [integrity] confidentiality", kernel_signed=True, crash_loaded=True
    ).build(tmp_path)
    assert findings_of(tmp_path)["signatures"].status == OK


def test_malformed_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Machine(crash_loaded=True, config_text="[dump]\nlevel = 99\n").build(tmp_path)
    status, out = check_cli(tmp_path, capsys)
    item = findings_of(tmp_path)["config"]
    assert status == 1 and item.status == FAIL
    assert item.message == (
        f"{tmp_path}/etc/kdumpkit.toml: dump.level = 99: must be between 0 and 31"
    )
    # the other checks still ran, with the defaults
    assert "dump directory" in out


def test_kernel_without_kexec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = "CONFIG_SYSFS=y\nCONFIG_VMCORE_INFO=y\n# CONFIG_KEXEC is not set\n"
    Machine(crash_size=None, kernel_config=config).build(tmp_path)
    status, out = check_cli(tmp_path, capsys, "--json")
    report = json.loads(out)
    assert status == 1 and report["ready"] is False
    kexec = next(item for item in report["items"] if item["item"] == "kexec support")
    assert kexec["message"] == (
        f"this kernel ({RELEASE}) has no kexec support (neither CONFIG_KEXEC nor "
        "CONFIG_KEXEC_FILE is set, /sys/kernel/kexec_crash_size is missing): no memory can "
        "be reserved and no capture kernel loaded"
    )
    statuses = {item["item"]: item["status"] for item in report["items"]}
    assert statuses["CONFIG_KEXEC_CORE"] == FAIL
    assert statuses["CONFIG_VMCORE_INFO/CRASH_CORE"] == OK  # 6.9+ name accepted
    assert "capture kernel" not in statuses


def test_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    """The development container's kernel has no kexec: check must say so and fail."""
    if Path("/sys/kernel/kexec_crash_size").exists():
        pytest.skip("this machine's kernel has kexec")
    status = main(["check"])
    out = capsys.readouterr().out
    assert status == 1
    assert "has no kexec support" in out.splitlines()[-1]


def test_dump_dir_not_writable_and_ssh(tmp_path: Path) -> None:
    Machine(crash_loaded=True, config_text='[dump]\ndir = "/var/crash"\n').build(tmp_path)
    (tmp_path / "var" / "crash").rmdir()
    (tmp_path / "var" / "crash").write_text("a file, not a folder")
    item = findings_of(tmp_path)["dump directory"]
    assert item.status == FAIL and item.message == "/var/crash is not writable"
    Machine(
        crash_loaded=True, config_text='[ssh]\ntarget = "k@h:/d"\nkey = "/root/.ssh/k"\n'
    ).build(tmp_path / "ssh")
    item = findings_of(tmp_path / "ssh")["dump target"]
    assert item.status == FAIL and item.message == "ssh key /root/.ssh/k not found"


def test_estimate_terms_and_ranges(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Machine().build(tmp_path)
    estimate = estimate_machine(Host(str(tmp_path)), Config())
    terms = dict(estimate.terms)
    assert terms["capture kernel (bzImage init_size)"] == 60 * MiB
    assert terms["initramfs unpacked"] == estimate.initrd.unpacked_size
    assert terms["per-CPU memory (2 CPUs)"] == 4 * MiB  # 2 capture CPUs of 4
    assert terms["compression threads past the first (1)"] == 10 * MiB
    assert estimate.size % (32 * MiB) == 0
    assert estimate.size >= sum(terms.values()) * 1.1
    value = parse_crashkernel(str(estimate.value))
    assert value == estimate.value and not value.plain
    # covers this 1023 MiB machine, with at least the machine's own estimate
    assert value.size_for(estimate.system_ram) >= estimate.size
    assert value.size_for(8 << 40) > value.size_for(2 << 30)  # bitmaps grow with RAM
    assert main(["estimate", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == f"crashkernel={estimate.value}"
    assert "60.0 MiB  capture kernel (bzImage init_size)" in out
    assert main(["estimate", "--root", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["crashkernel"] == str(estimate.value) and data["reserved"] == 384 * MiB


def test_other_kdump_service_enabled(tmp_path: Path) -> None:
    wants = "/etc/systemd/system/multi-user.target.wants/kdump-tools.service"
    Machine(crash_loaded=True, extra={wants: "[Unit]\n"}).build(tmp_path)
    item = findings_of(tmp_path)["other kdump services"]
    assert item.status == WARN and item.fix == "systemctl disable kdump-tools.service"


def test_saved_dumps_and_a_capture_cut_short(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Machine(crash_loaded=True).build(tmp_path)
    crash = tmp_path / "var" / "crash"
    assert "saved dumps" not in findings_of(tmp_path)  # nothing saved yet: no line
    (crash / "202612010930").mkdir()
    (crash / "202612010930" / "dump.202612010930").write_bytes(b"KDUMP   ")
    item = findings_of(tmp_path)["saved dumps"]
    assert item.status == OK
    assert item.message == "1 crash saved, the newest in /var/crash/202612010930"
    # a capture that kept only the log (no room, or it stopped before the dump)
    (crash / "202612020800").mkdir()
    (crash / "202612020800" / "dmesg.202612020800").write_text("log\n")
    item = findings_of(tmp_path)["saved dumps"]
    assert item.status == WARN and "kernel log only" in item.message
    assert "/var/crash/202612020800" in item.message
    # the power went off while the capture kernel wrote the next one
    (crash / "202612041710").mkdir()
    (crash / "202612041710" / "dmesg.202612041710").write_text("log\n")
    (crash / "202612041710" / "dump.202612041710.incomplete").write_bytes(b"KDUMP   ")
    item = findings_of(tmp_path)["saved dumps"]
    assert item.status == WARN
    assert "/var/crash/202612041710/dump.202612041710.incomplete" in item.message
    assert item.fix.startswith("`kdumpkit info /var/crash/202612041710/dump")
    status, out = check_cli(tmp_path, capsys)
    assert status == 0 and "cut short" in out
