"""load / unload / status / test: the syscall, errno messages, the kexec -p fallback."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from service_machine import RELEASE, Machine, MiB, fake_commands

from kdumpkit.cli.main import main
from kdumpkit.service import kexec
from kdumpkit.service.errors import KexecError
from kdumpkit.service.host import Host
from kdumpkit.service.kexec import (
    KEXEC_FILE_NO_INITRAMFS,
    KEXEC_FILE_ON_CRASH,
    KEXEC_FILE_UNLOAD,
    LoadPlan,
    explain,
)
from kdumpkit.service.plan import plan_load


class FakeSyscall:
    """Stands in for kexec_file_load: records calls, sets kexec_crash_loaded like the kernel."""

    def __init__(self, root: Path, fail: int = 0) -> None:
        self.root, self.fail, self.calls = root, fail, []

    def __call__(self, kernel_fd: int, initrd_fd: int, cmdline: str | None, flags: int) -> None:
        kernel = Path(f"/proc/self/fd/{kernel_fd}").resolve().name if kernel_fd >= 0 else None
        self.calls.append((kernel, initrd_fd >= 0, cmdline, flags))
        if self.fail:
            raise KexecError("simulated", self.fail)
        loaded = "0" if flags & KEXEC_FILE_UNLOAD else "1"
        (self.root / "sys/kernel/kexec_crash_loaded").write_text(loaded + "\n")


@pytest.fixture
def machine(tmp_path: Path) -> Path:
    return Machine(
        cmdline="BOOT_IMAGE=/boot/vmlinuz root=/dev/vda1 ro quiet crashkernel=384M -- init-arg"
    ).build(tmp_path / "root")


def test_load_prints_plan_and_arms(
    machine: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeSyscall(machine)
    monkeypatch.setattr(kexec, "kexec_file_load", fake)
    assert main(["load", "--root", str(machine), "--append", "console=ttyS0"]) == 0
    out = capsys.readouterr().out
    # 384M pays for two capture CPUs; the boot CPU (APIC ID 0) is not woken
    cmdline = (
        "BOOT_IMAGE=/boot/vmlinuz root=/dev/vda1 ro quiet irqpoll nr_cpus=2 "
        "reset_devices disable_cpu_apicid=0 console=ttyS0"
    )
    assert out.splitlines()[:3] == [
        f"kernel:  /boot/vmlinuz-{RELEASE}",
        f"initrd:  /boot/initrd.img-{RELEASE}",
        f"cmdline: {cmdline}",
    ]
    assert "loaded (via kexec_file_load); kexec_crash_loaded = 1" in out
    assert fake.calls == [(f"vmlinuz-{RELEASE}", True, cmdline, KEXEC_FILE_ON_CRASH)]
    # status and check see it, and know what was loaded
    assert main(["status", "--root", str(machine), "--json"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["loaded"] and state["reserved"] == 384 * MiB
    assert state["load"]["cmdline"] == cmdline and state["crashkernel"] == "crashkernel=384M"
    assert main(["check", "--root", str(machine)]) == 0
    assert "capture kernel" in capsys.readouterr().out
    # unload clears it
    assert main(["unload", "--root", str(machine)]) == 0
    assert "kexec_crash_loaded = 0" in capsys.readouterr().out
    assert fake.calls[-1] == (None, False, None, KEXEC_FILE_UNLOAD | KEXEC_FILE_ON_CRASH)
    assert main(["status", "--root", str(machine)]) == 1
    assert "capture kernel: not loaded" in capsys.readouterr().out


def test_load_explicit_files_without_initrd(
    machine: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeSyscall(machine)
    monkeypatch.setattr(kexec, "kexec_file_load", fake)
    kernel = machine / "srv/bzImage"
    kernel.parent.mkdir()
    kernel.write_bytes((machine / f"boot/vmlinuz-{RELEASE}").read_bytes())
    (machine / "etc/systemd/system").mkdir(parents=True)
    (machine / "etc/systemd/system/kdumpkit-collect.service").write_text("[Unit]\n")
    assert main(["load", "--root", str(machine), "--kernel", "/srv/bzImage", "--no-initrd"]) == 0
    assert fake.calls[0][0] == "bzImage" and fake.calls[0][1] is False
    assert fake.calls[0][3] == KEXEC_FILE_ON_CRASH | KEXEC_FILE_NO_INITRAMFS
    assert fake.calls[0][2].endswith(
        "reset_devices systemd.unit=kdumpkit-collect.service disable_cpu_apicid=0"
    )
    capsys.readouterr()


def test_dry_run_loads_nothing(
    machine: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeSyscall(machine)
    monkeypatch.setattr(kexec, "kexec_file_load", fake)
    assert main(["load", "--root", str(machine), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert fake.calls == [] and "dry run: nothing loaded" in out
    assert "kexec_load fallback would run: kexec -p -c '--command-line=BOOT_IMAGE" in out


@pytest.mark.parametrize(
    ("machine_args", "message"),
    [
        ({"crash_size": None}, f"this kernel ({RELEASE}) has no kexec support"),
        ({"crash_size": 0}, "no memory is reserved for the capture kernel"),
        ({"crash_size": 32 * MiB}, "the reservation is too small: 32M reserved, but the kernel"),
        ({"initrd": False}, f"initramfs not found (tried /boot/initrd.img-{RELEASE}"),
        ({"kernel_init_size": None}, f"capture kernel not found (tried /boot/vmlinuz-{RELEASE}"),
    ],
)
def test_load_refuses_before_touching_the_kernel(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    machine_args: dict[str, object],
    message: str,
) -> None:
    root = Machine(**machine_args).build(tmp_path)
    fake = FakeSyscall(root)
    monkeypatch.setattr(kexec, "kexec_file_load", fake)
    assert main(["load", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert fake.calls == []


@pytest.mark.parametrize(
    ("code", "machine_args", "message"),
    [
        (
            errno.EKEYREJECTED,
            {"lockdown": "none [integrity] confidentiality"},
            "signed kexec images are required (lockdown=integrity",
        ),
        (
            errno.EPERM,
            {"lockdown": "none integrity [confidentiality]"},
            "signed kexec images are required (lockdown=confidentiality",
        ),
        (errno.EADDRNOTAVAIL, {}, "do not fit in the 384M reserved by crashkernel="),
        (errno.ENOMEM, {"crash_size": 0}, "no memory is reserved for the capture kernel"),
        (errno.EBUSY, {}, "another kexec load or unload is in progress"),
        (errno.EINVAL, {}, "the kernel rejected the arguments"),
    ],
)
def test_errno_messages(
    tmp_path: Path, code: int, machine_args: dict[str, object], message: str
) -> None:
    host = Host(str(Machine(**machine_args).build(tmp_path)))
    assert message in explain(code, host, LoadPlan("/boot/vmlinuz", None, ""))


def test_signature_refusal_does_not_fall_back(
    machine: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    Machine(lockdown="none [integrity] confidentiality").build(machine)
    monkeypatch.setattr(kexec, "kexec_file_load", FakeSyscall(machine, errno.EKEYREJECTED))
    bin_dir = fake_commands(machine.parent / "bin", {"kexec": 0})
    monkeypatch.setenv("PATH", str(bin_dir))
    assert main(["load", "--root", str(machine)]) == 2
    assert "kexec_file_load failed: the kernel refused" in capsys.readouterr().err
    assert not (bin_dir / "calls.log").exists()


def test_missing_syscall_falls_back_to_kexec_tools(
    machine: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(kexec, "kexec_file_load", FakeSyscall(machine, errno.ENOSYS))
    bin_dir = fake_commands(machine.parent / "bin", {"kexec": 0})
    monkeypatch.setenv("PATH", str(bin_dir))
    # the fake kexec does not touch sysfs; mark the kernel loaded as the real one would
    (machine / "sys/kernel/kexec_crash_loaded").write_text("1\n")
    assert main(["load", "--root", str(machine)]) == 0
    out = capsys.readouterr().out
    assert "falling back to kexec -p (kexec_load)" in out and "loaded (via kexec -p)" in out
    call = (bin_dir / "calls.log").read_text()
    assert call.startswith("kexec -p -c --command-line=BOOT_IMAGE=/boot/vmlinuz root=/dev/vda1")
    assert call.rstrip().endswith(
        f"--initrd={machine}/boot/initrd.img-{RELEASE} {machine}/boot/vmlinuz-{RELEASE}"
    )


def test_fallback_failure_and_missing_kexec(
    machine: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(kexec, "kexec_file_load", FakeSyscall(machine, errno.ENOSYS))
    bin_dir = fake_commands(machine.parent / "bin", {"kexec": 1})
    monkeypatch.setenv("PATH", str(bin_dir))
    assert main(["load", "--root", str(machine)]) == 2
    assert "kexec -p failed (exit 1): kexec: simulated failure" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(machine / "nowhere"))
    assert main(["load", "--root", str(machine)]) == 2
    assert "needs kexec-tools' kexec, which is not on PATH" in capsys.readouterr().err


def test_real_syscall_reports_an_errno() -> None:
    """The ctypes call reaches the kernel; fd -1 without UNLOAD can change nothing."""
    with pytest.raises(KexecError) as info:
        kexec.kexec_file_load(-1, -1, "", KEXEC_FILE_ON_CRASH)
    assert info.value.errno in (errno.ENOSYS, errno.EBADF, errno.EPERM)


def test_crash_test_refuses_without_the_flag(
    machine: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["test", "--root", str(machine)]) == 2
    assert "--yes-crash-this-machine" in capsys.readouterr().err
    assert main(["test", "--root", str(machine), "--yes-crash-this-machine"]) == 2
    assert "no capture kernel is loaded" in capsys.readouterr().err
    assert (machine / "proc/sysrq-trigger").read_text() == ""
    (machine / "sys/kernel/kexec_crash_loaded").write_text("1\n")
    assert main(["test", "--root", str(machine), "--yes-crash-this-machine"]) == 0
    assert (machine / "proc/sys/kernel/sysrq").read_text() == "1\n"
    assert (machine / "proc/sysrq-trigger").read_text() == "c"
    capsys.readouterr()


def test_busybox_guest_check_load_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The QEMU testbed's guest: no kernel config, no securityfs, /boot/{vmlinuz,capture.img}."""
    root = Machine(
        cmdline="console=ttyS0 crashkernel=256M panic=5",
        crash_size=256 * MiB,
        lockdown=None,
        kernel_config=None,
        kernel_init_size=None,
        initrd=False,
    ).build(tmp_path)
    real = Machine().build(tmp_path / "real")
    (root / "boot").mkdir(exist_ok=True)
    (root / "boot/vmlinuz").write_bytes((real / f"boot/vmlinuz-{RELEASE}").read_bytes())
    (root / "boot/capture.img").write_bytes((real / f"boot/initrd.img-{RELEASE}").read_bytes())
    files = ["--kernel", "/boot/vmlinuz", "--initrd", "/boot/capture.img"]
    assert main(["check", "--root", str(root), *files]) == 1
    before = capsys.readouterr().out
    assert "FAIL  capture kernel" in before and before.count("FAIL") == 2  # + the summary
    monkeypatch.setattr(kexec, "kexec_file_load", FakeSyscall(root))
    assert main(["load", "--root", str(root), *files, "--append", "console=ttyS0"]) == 0
    out = capsys.readouterr().out
    assert (
        "cmdline: panic=5 irqpoll nr_cpus=2 reset_devices disable_cpu_apicid=0 console=ttyS0\n"
        in out
    )
    assert main(["check", "--root", str(root)]) == 0  # finds the loaded files itself
    after = capsys.readouterr().out
    assert "OK    capture kernel" in after and "/boot/capture.img" in after
    assert "WARN  kernel config" in after


def test_kexec_disabled_by_sysctl(tmp_path: Path) -> None:
    from kdumpkit.service.checks import FAIL, check_kexec_support

    root = Machine(extra={"/proc/sys/kernel/kexec_load_disabled": "1\n"}).build(tmp_path)
    finding = check_kexec_support(Host(str(root)), {})
    assert finding.status == FAIL and "disabled until reboot" in finding.message
    assert "kexec is disabled until reboot" in explain(errno.EPERM, Host(str(root)))


def test_load_record_falls_back_to_tmp(
    machine: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A read-only /run (the testbed guest's 9p root): the record goes to /tmp/kdumpkit."""
    (machine / "run").write_text("not a directory")
    monkeypatch.setattr(kexec, "kexec_file_load", FakeSyscall(machine))
    assert main(["load", "--root", str(machine)]) == 0
    assert (machine / "tmp/kdumpkit/loaded.json").is_file()
    assert main(["status", "--root", str(machine)]) == 0
    assert (
        f"kernel /boot/vmlinuz-{RELEASE}, initrd /boot/initrd.img-{RELEASE}"
        in capsys.readouterr().out
    )
    (machine / "tmp/kdumpkit/loaded.json").chmod(0o666)  # anyone could have written it
    assert main(["status", "--root", str(machine), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["load"] is None


@pytest.mark.parametrize(
    ("reserved_mib", "config_text", "append", "expected"),
    [
        (384, None, "", "nr_cpus=2 reset_devices disable_cpu_apicid=0"),
        # too small for a second CPU's share: one CPU rather than an out-of-memory capture
        (192, None, "", "nr_cpus=1 reset_devices"),
        (384, "[kexec]\ncapture_cpus = 1\n", "", "nr_cpus=1 reset_devices"),
        (384, "[kexec]\ncapture_cpus = 4\n", "", "nr_cpus=4 reset_devices disable_cpu_apicid=0"),
        (384, None, "nr_cpus=3", "reset_devices disable_cpu_apicid=0 nr_cpus=3"),
    ],
)
def test_capture_cpus_from_the_reservation(
    tmp_path: Path, reserved_mib: int, config_text: str | None, append: str, expected: str
) -> None:
    root = Machine(
        cmdline=f"root=/dev/vda1 crashkernel={reserved_mib}M",
        crash_size=reserved_mib * MiB,
        config_text=config_text,
    ).build(tmp_path)
    plan = plan_load(Host(str(root)), Host(str(root)).load_config(), append=append)
    assert plan.cmdline.startswith("root=/dev/vda1 irqpoll ")
    assert plan.cmdline.endswith(expected), plan.cmdline
