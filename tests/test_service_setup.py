"""``kdumpkit setup``: dry-run diff, --apply with fake update-grub/systemctl, rollback."""

from __future__ import annotations

from pathlib import Path

import pytest
from service_machine import Machine, fake_commands

from kdumpkit.cli.main import main
from kdumpkit.config import Config
from kdumpkit.service.bootloader import GRUB_DROPIN
from kdumpkit.service.systemd import unit_text

UNIT_DIR = "etc/systemd/system"


@pytest.fixture
def machine(tmp_path: Path) -> Path:
    root = Machine(
        cmdline="root=/dev/vda1 ro quiet",
        crash_size=0,
        extra={
            "/etc/default/grub": 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n',
            "/etc/default/grub.d/kdump-tools.cfg": (
                'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT crashkernel=384M-:128M"\n'
            ),
        },
    ).build(tmp_path / "root")
    return root


def use_fake_path(monkeypatch: pytest.MonkeyPatch, folder: Path, **statuses: int) -> Path:
    bin_dir = fake_commands(
        folder, {name.replace("_", "-"): code for name, code in statuses.items()}
    )
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def test_dry_run_shows_diff_and_changes_nothing(
    machine: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bin_dir = use_fake_path(monkeypatch, machine.parent / "bin", update_grub=0, systemctl=0)
    before = sorted(p.relative_to(machine) for p in machine.rglob("*"))
    assert main(["setup", "--root", str(machine), "--crashkernel", "1G-64G:384M,64G-:512M"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "crashkernel=1G-64G:384M,64G-:512M"
    assert "note: /etc/default/grub.d/kdump-tools.cfg also sets crashkernel=" in out
    assert f"+++ {GRUB_DROPIN}" in out
    assert (
        '+GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT '
        'crashkernel=1G-64G:384M,64G-:512M"' in out
    )
    assert f"+++ /{UNIT_DIR}/kdumpkit-load.service" in out
    assert "would run: update-grub" in out
    assert (
        f"would run: systemctl --root={machine} enable kdumpkit-load.service "
        "kdumpkit-collect.service" in out
    )
    assert sorted(p.relative_to(machine) for p in machine.rglob("*")) == before
    assert not (bin_dir / "calls.log").exists()


def test_apply_writes_and_runs(
    machine: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bin_dir = use_fake_path(monkeypatch, machine.parent / "bin", update_grub=0, systemctl=0)
    assert main(["setup", "--root", str(machine), "--apply"]) == 0
    out = capsys.readouterr().out
    value = out.splitlines()[0]
    assert value.startswith("crashkernel=") and f"reboot for {value} to take effect" in out
    dropin = (machine / GRUB_DROPIN.lstrip("/")).read_text()
    assert dropin.endswith(f'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT {value}"\n')
    load_unit = (machine / UNIT_DIR / "kdumpkit-load.service").read_text()
    assert "ExecStart=" in load_unit and load_unit.rstrip().endswith("multi-user.target")
    assert "@" not in load_unit.replace("@KDUMPKIT@", "").split("ExecStart=")[1].split()[0]
    collect = (machine / UNIT_DIR / "kdumpkit-collect.service").read_text()
    assert "ConditionPathExists=/proc/vmcore" in collect and "collect" in collect
    assert (
        "ExecStopPost=/bin/systemctl reboot --force --force" in collect
        and "network-online" not in collect
    )
    assert (bin_dir / "calls.log").read_text().splitlines() == [
        "update-grub ",
        f"systemctl --root={machine} enable kdumpkit-load.service kdumpkit-collect.service",
    ]
    # a second run has nothing to change
    assert main(["setup", "--root", str(machine), "--crashkernel", value.split("=", 1)[1]]) == 0
    assert f"{GRUB_DROPIN}: unchanged" in capsys.readouterr().out


def test_failed_command_restores_files(
    machine: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_fake_path(monkeypatch, machine.parent / "bin", update_grub=0, systemctl=1)
    assert main(["setup", "--root", str(machine), "--apply"]) == 2
    captured = capsys.readouterr()
    assert "systemctl: simulated failure" in captured.err
    assert "restored /etc/default/grub.d/kdumpkit.cfg" in captured.out
    assert not (machine / GRUB_DROPIN.lstrip("/")).exists()
    assert not (machine / UNIT_DIR / "kdumpkit-load.service").exists()


def test_missing_tools_change_nothing(
    machine: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_fake_path(monkeypatch, machine.parent / "bin", update_grub=0)
    assert main(["setup", "--root", str(machine), "--apply"]) == 2
    assert "not found on PATH: systemctl; nothing was changed" in capsys.readouterr().err
    assert not (machine / GRUB_DROPIN.lstrip("/")).exists()
    use_fake_path(monkeypatch, machine.parent / "bin2", systemctl=0)
    assert main(["setup", "--root", str(machine), "--apply"]) == 2
    assert "no supported boot loader tool" in capsys.readouterr().err


def test_grubby_machines(
    machine: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for path in ("etc/default/grub.d/kdump-tools.cfg", "etc/default/grub"):
        (machine / path).unlink()
    (machine / "etc/default/grub.d").rmdir()
    bin_dir = use_fake_path(monkeypatch, machine.parent / "bin", grubby=0, systemctl=0)
    assert (
        main(["setup", "--root", str(machine), "--apply", "--no-units", "--crashkernel", "256M"])
        == 0
    )
    capsys.readouterr()
    assert (
        bin_dir / "calls.log"
    ).read_text() == "grubby --update-kernel=ALL --args=crashkernel=256M\n"


def test_bad_values_are_refused(machine: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["setup", "--root", str(machine), "--crashkernel", "lots"]) == 2
    assert "expected a size" in capsys.readouterr().err
    (machine / "etc/kdumpkit.toml").write_text("[dump]\ncompress = 'rar'\n")
    assert main(["setup", "--root", str(machine)]) == 2
    assert "dump.compress = 'rar': must be one of" in capsys.readouterr().err


def test_ssh_target_waits_for_the_network() -> None:
    text = unit_text(
        "kdumpkit-collect.service", "/usr/bin/kdumpkit", Config(ssh="dump@host:/var/crash")
    )
    assert "Wants=local-fs.target network-online.target" in text
    assert "ExecStart=/usr/bin/kdumpkit collect" in text and "@" not in text.split("[Install]")[0]


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_revert_leaves_etc_as_it_was(
    machine: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bin_dir = use_fake_path(monkeypatch, machine.parent / "bin", update_grub=0, systemctl=0)
    before = _tree(machine)
    assert main(["setup", "--root", str(machine), "--apply"]) == 0
    assert _tree(machine) != before
    capsys.readouterr()
    (bin_dir / "calls.log").unlink()
    # dry run first: shows the removals, changes nothing
    assert main(["setup", "--root", str(machine), "--revert"]) == 0
    out = capsys.readouterr().out
    assert f"--- {GRUB_DROPIN}\n+++ /dev/null" in out
    assert f"would run: systemctl --root={machine} disable kdumpkit-load.service" in out
    assert not (bin_dir / "calls.log").exists()
    assert main(["setup", "--root", str(machine), "--revert", "--apply"]) == 0
    assert _tree(machine) == before
    assert (bin_dir / "calls.log").read_text().splitlines() == [
        f"systemctl --root={machine} disable kdumpkit-load.service kdumpkit-collect.service",
        "update-grub ",
    ]
    assert "reverted" in capsys.readouterr().out
    assert main(["setup", "--root", str(machine), "--revert", "--apply"]) == 0
    assert "nothing to revert" in capsys.readouterr().out


def test_revert_leaves_files_it_did_not_write(
    machine: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_fake_path(monkeypatch, machine.parent / "bin", update_grub=0, systemctl=0)
    mine = machine / GRUB_DROPIN.lstrip("/")
    mine.write_text('GRUB_CMDLINE_LINUX_DEFAULT="crashkernel=1G"\n')
    assert main(["setup", "--root", str(machine), "--revert", "--apply"]) == 0
    assert "was not written by kdumpkit: left alone" in capsys.readouterr().out
    assert mine.read_text() == 'GRUB_CMDLINE_LINUX_DEFAULT="crashkernel=1G"\n'
