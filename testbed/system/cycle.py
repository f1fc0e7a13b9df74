"""The real-system kdump cycle, on a real Debian install (systemd, GRUB) under QEMU.

    python3 testbed/system/cycle.py kdumpkit [--out DIR]
    python3 testbed/system/cycle.py kdump-tools [--out DIR]

kdumpkit: boot → install kdumpkit from its wheel (README's way) → ``kdumpkit check`` (FAIL:
nothing reserved) → ``kdumpkit setup --apply`` (real update-grub, real systemctl enable) →
reboot → ``check`` all OK, the capture kernel loaded at boot by kdumpkit-load.service →
``kdumpkit test --yes-crash-this-machine`` → the capture kernel boots the system's own root
into kdumpkit-collect.service, which saves the dump and reboots → the normal system again:
``kdumpkit report`` names the panic → ``kdumpkit setup --revert --apply`` leaves /etc as it was.

kdump-tools: Debian's kdump-tools (installed and enabled in its image) on the same system:
boot → ``kdump-config status`` → sysrq-c → its capture → reboot.

Each stage's time is printed and written to ``<out>/stages.json``; the console to
``<out>/console-*.log``; the saved dump is copied out of the disk to ``<out>/crash/``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from image import CACHE, build_base_image, build_wheelhouse, wheel_disk
from machine import Machine, copy_out, overlay

PANIC = r"Kernel panic - not syncing"
POWER_CUT_DELAY_S = 8.0


@dataclass
class CycleReport:
    """What a real-system cycle did and how long each stage took (seconds)."""

    flavour: str
    stages: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    crash_files: list[str] = field(default_factory=list)
    etc_diff: str | None = None

    def stage(self, name: str, seconds: float) -> None:
        self.stages[name] = round(seconds, 1)
        print(f"[cycle {self.flavour}] {name}: {seconds:.1f}s", file=sys.stderr, flush=True)


def wait_for_load_unit(machine: Machine) -> None:
    """The login prompt can come before kdumpkit-load.service has finished."""
    machine.run(
        'timeout 900 sh -c \'while [ "$(systemctl is-active kdumpkit-load.service)" '
        "= activating ]; do sleep 2; done'"
    )


def power_cut_during_collect(machine: Machine, report: CycleReport) -> None:
    """Panic again and cut the power while the capture kernel writes the dump."""
    machine.send("kdumpkit test --yes-crash-this-machine")
    machine.wait(PANIC, timeout_s=300)
    machine.wait(r"kdumpkit collect: saved the kernel log", timeout_s=1200)
    time.sleep(POWER_CUT_DELAY_S)  # into the dump's writing (the journal commits its name)
    machine.guest.kill()
    report.stage("power cut during collect", 0)


def after_power_cut(machine: Machine, report: CycleReport) -> None:
    """Back up after the power cut: the system boots, check names the cut-short dump."""
    started = time.monotonic()
    machine.wait_for_shell()
    report.stage("boot after the power cut", time.monotonic() - started)
    wait_for_load_unit(machine)
    report.outputs["check-after-power-cut"] = machine.run("kdumpkit check").output
    report.outputs["crash-dir-after-power-cut"] = machine.run("ls /var/crash/*/").output
    # clear the cut-short capture for the next stages
    machine.check("rm -f /var/crash/*/*.incomplete")


def full_dump_directory(machine: Machine, report: CycleReport) -> None:
    """/var/crash on a 6 MiB file system: the capture keeps the log, the system comes back."""
    machine.check(
        "cp /etc/fstab /root/fstab.orig && truncate -s 6M /root/small.img && "
        "mkfs.ext4 -q -F /root/small.img && "
        "echo '/root/small.img /var/crash ext4 loop 0 0' >> /etc/fstab && "
        "systemctl daemon-reload && mount /var/crash"
    )
    machine.send("kdumpkit test --yes-crash-this-machine")
    panicked, _ = machine.wait(PANIC, timeout_s=300)
    _, line = machine.wait(r"kdumpkit collect: .*(not enough free space|no space)", 1200)
    report.outputs["collect-full"] = line
    back = machine.wait_for_shell()
    report.stage("full /var/crash: panic → login prompt again", back - panicked)
    report.outputs["crash-dir-full"] = machine.run("ls /var/crash/*/").output
    machine.check(
        "umount /var/crash && cp /root/fstab.orig /etc/fstab && rm /root/small.img "
        "/root/fstab.orig && systemctl daemon-reload"
    )


def broken_config(machine: Machine, report: CycleReport) -> None:
    """A broken /etc/kdumpkit.toml: the load unit fails with one line, the boot goes on."""
    machine.check("printf '[dump]\\ncompress = \"rar\"\\n' > /etc/kdumpkit.toml")
    rebooted = time.monotonic()
    machine.send("systemctl reboot")
    machine.wait_for_shell()
    report.stage("reboot with a broken config", time.monotonic() - rebooted)
    wait_for_load_unit(machine)
    report.outputs["load-broken-config"] = machine.run(
        "systemctl is-failed kdumpkit-load.service; "
        "journalctl -b -o cat -u kdumpkit-load.service | grep '^kdumpkit'"
    ).output
    report.outputs["check-broken-config"] = machine.run("kdumpkit check").output
    machine.check("rm /etc/kdumpkit.toml")


def revert(machine: Machine, report: CycleReport) -> None:
    """``setup --revert --apply``: /etc as it was before setup."""
    step = machine.check("kdumpkit setup --revert --apply")
    report.outputs["revert"] = step.output
    report.etc_diff = machine.run("diff -r --no-dereference /root/etc-before /etc").output
    machine.send("sync; systemctl poweroff")
    machine.wait_exit(300)


def kdumpkit_cycle(out: Path, faults: bool = True) -> CycleReport:
    report = CycleReport("kdumpkit")
    base = build_base_image("kdumpkit")
    wheels = wheel_disk(build_wheelhouse(CACHE / "wheels"), out / "wheels.raw")
    disk = overlay(base, out / "disk.qcow2")
    t0 = time.monotonic()
    with Machine(disk, out / "console-kdumpkit.log", extra_disks=(wheels,)) as machine:
        machine.wait_for_shell()
        report.stage("boot", time.monotonic() - t0)
        step = machine.check(
            "mount -o ro /dev/vdb /mnt && python3 -m venv /opt/kdumpkit && "
            "/opt/kdumpkit/bin/pip install -q --no-index --find-links /mnt kdumpkit && "
            "ln -sf /opt/kdumpkit/bin/kdumpkit /usr/local/bin/kdumpkit && umount /mnt && "
            "kdumpkit --version"
        )
        report.outputs["install"] = step.output
        report.stage("install from the wheel", step.seconds)
        machine.check("cp -a /etc /root/etc-before")
        step = machine.run("kdumpkit check")
        report.outputs["check-before"] = step.output
        if step.status != 1:
            raise RuntimeError(f"check before setup exited {step.status}:\n{step.output}")
        step = machine.check("kdumpkit setup --apply")
        report.outputs["setup"] = step.output
        report.stage("setup --apply", step.seconds)
        rebooted = time.monotonic()
        machine.send("systemctl reboot")
        machine.wait(r"GRUB|Booting `|Linux version", timeout_s=600)
        machine.wait_for_shell()
        report.stage("reboot with crashkernel=", time.monotonic() - rebooted)
        wait_for_load_unit(machine)
        for name, command in (
            ("cmdline", "cat /proc/cmdline"),
            ("load-unit", "systemctl is-active kdumpkit-load.service"),
            ("load-journal", "journalctl -b -o cat -u kdumpkit-load.service"),
            ("check-after", "kdumpkit check"),
            ("status", "kdumpkit status"),
        ):
            report.outputs[name] = machine.check(command).output
        panic_sent = time.monotonic()
        machine.send("kdumpkit test --yes-crash-this-machine")
        panicked, _ = machine.wait(PANIC, timeout_s=300)
        report.stage("test → panic", panicked - panic_sent)
        seen, _ = machine.wait(r"Linux version", timeout_s=300)
        report.stage("panic → capture kernel starts", seen - panicked)
        saved, line = machine.wait(r"kdumpkit collect: saved the dump to", timeout_s=1200)
        report.outputs["collect"] = line
        report.stage("panic → dump saved", saved - panicked)
        back = machine.wait_for_shell()
        report.stage("panic → login prompt again", back - panicked)
        report.outputs["crash-dir"] = machine.check("ls -l /var/crash/*/").output
        step = machine.check("kdumpkit report /var/crash/*/dump.*", timeout_s=900)
        report.outputs["report"] = step.output
        report.stage("report", step.seconds)
        report.outputs["check-after-crash"] = machine.run("kdumpkit check").output
        if faults:
            power_cut_during_collect(machine, report)
        else:
            revert(machine, report)
    if faults:
        # the machine is powered on again from the same disk
        with Machine(disk, out / "console-kdumpkit-2.log") as machine:
            after_power_cut(machine, report)
            full_dump_directory(machine, report)
            broken_config(machine, report)
            revert(machine, report)
    copy_out(disk, "/var/crash", out / "crash")
    report.crash_files = sorted(
        str(p.relative_to(out / "crash")) for p in (out / "crash").rglob("*") if p.is_file()
    )
    return report


def kdump_tools_cycle(out: Path) -> CycleReport:
    report = CycleReport("kdump-tools")
    disk = overlay(build_base_image("kdump-tools"), out / "disk.qcow2")
    t0 = time.monotonic()
    with Machine(disk, out / "console-kdump-tools.log") as machine:
        machine.wait_for_shell()
        report.stage("boot", time.monotonic() - t0)
        report.outputs["cmdline"] = machine.check("cat /proc/cmdline").output
        report.outputs["status"] = machine.check("kdump-config status").output
        panic_sent = time.monotonic()
        machine.send("sync; echo 1 > /proc/sys/kernel/sysrq; echo c > /proc/sysrq-trigger")
        panicked, _ = machine.wait(PANIC, timeout_s=300)
        report.stage("sysrq-c → panic", panicked - panic_sent)
        seen, _ = machine.wait(r"Linux version", timeout_s=300)
        report.stage("panic → capture kernel starts", seen - panicked)
        saved, line = machine.wait(r"saved vmcore in|kdump-tools.*saved", timeout_s=1200)
        report.outputs["collect"] = line
        report.stage("panic → dump saved", saved - panicked)
        back = machine.wait_for_shell()
        report.stage("panic → login prompt again", back - panicked)
        report.outputs["crash-dir"] = machine.check("ls -l /var/crash/*/").output
        machine.send("sync; systemctl poweroff")
        machine.wait_exit(300)
    copy_out(disk, "/var/crash", out / "crash")
    report.crash_files = sorted(
        str(p.relative_to(out / "crash")) for p in (out / "crash").rglob("*") if p.is_file()
    )
    return report


CYCLES = {"kdumpkit": kdumpkit_cycle, "kdump-tools": kdump_tools_cycle}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("flavour", choices=sorted(CYCLES))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix=f"cycle-{args.flavour}-"))
    out.mkdir(parents=True, exist_ok=True)
    report = CYCLES[args.flavour](out)
    (out / "stages.json").write_text(json.dumps(asdict(report), indent=2))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
