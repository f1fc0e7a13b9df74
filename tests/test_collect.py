"""``kdumpkit collect``: layout, crash safety (SIGKILL), full disks, retention, ssh."""

from __future__ import annotations

import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kdumpkit.capture.collect import CollectError, SshTarget, estimate_dump_bytes
from kdumpkit.capture.filter import exclude_unnecessary_pages
from kdumpkit.capture.save import save_dump
from kdumpkit.dump.open import open_dump

STAMP = "202611260841"  # CRASHTIME 1795682483 in UTC
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("KDUMPKIT_FIXTURES", ROOT.parent / "shared" / "fixtures"))
DMESG_1_7_8 = (
    FIXTURES / "linux-6.1.0-56-cloud-amd64-kdump" / "makedumpfile" / "dump-dmesg-1.7.8.txt"
)


def _collect(*args: str, env: dict[str, str] | None = None, timeout: float = 120):  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "kdumpkit", "collect", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )  # fmt: skip


@pytest.fixture
def empty_config(tmp_path: Path) -> Path:
    path = tmp_path / "kdumpkit.toml"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def kept_pages(elf61: Path) -> np.ndarray:
    with open_dump(elf61) as src:
        return exclude_unnecessary_pages(src, 31).keep


def _check_saved(directory: Path, kept: np.ndarray) -> None:
    dump, dmesg = directory / f"dump.{STAMP}", directory / f"dmesg.{STAMP}"
    assert dmesg.read_bytes() == DMESG_1_7_8.read_bytes()
    with open_dump(dump) as saved:
        assert not saved.header.incomplete
        assert np.array_equal(saved.present_bitmap(), kept)
        assert saved.read_page(int(np.flatnonzero(kept)[-1]))
    for path in (dump, dmesg):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_collect_local_layout(elf61: Path, tmp_path: Path, empty_config: Path, kept_pages) -> None:  # type: ignore[no-untyped-def]
    crash = tmp_path / "crash"
    run = _collect("--vmcore", str(elf61), "--dir", str(crash), "--config", str(empty_config))
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in crash.iterdir()) == [STAMP]
    assert sorted(p.name for p in (crash / STAMP).iterdir()) == [f"dmesg.{STAMP}", f"dump.{STAMP}"]
    _check_saved(crash / STAMP, kept_pages)
    again = _collect("--vmcore", str(elf61), "--dir", str(crash), "--config", str(empty_config))
    assert again.returncode == 0 and "already saved" in again.stderr


def test_collect_settings_from_config_and_retention(elf61: Path, tmp_path: Path) -> None:
    crash = tmp_path / "var-crash"
    for old in ("202401010000", "202501010000", "202601010000"):
        (crash / old).mkdir(parents=True)
    (crash / "not-a-dump").mkdir()
    config = tmp_path / "k.toml"
    config.write_text(f'[dump]\ndir = "{crash}"\nkeep = 2\nlevel = 17\ncompress = "zlib"\n')
    run = _collect("--vmcore", str(elf61), "--config", str(config), "--compress", "lzo")
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in crash.iterdir()) == ["202601010000", STAMP, "not-a-dump"]
    with open_dump(crash / STAMP / f"dump.{STAMP}") as saved, open_dump(elf61) as src:
        assert saved.header.dump_level == 17
        assert saved.header.compression == "lzo"  # the flag beats the file
        assert np.array_equal(saved.present_bitmap(), exclude_unnecessary_pages(src, 17).keep)


def test_sigkill_never_leaves_a_whole_looking_partial_dump(  # type: ignore[no-untyped-def]
    elf61: Path, tmp_path: Path, empty_config: Path, kept_pages
) -> None:
    rng = random.Random(20261126)
    for attempt in range(4):
        crash = tmp_path / f"crash{attempt}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "kdumpkit", "collect", "--vmcore", str(elf61),
             "--dir", str(crash), "--config", str(empty_config), "--threads", "1"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(rng.uniform(0.3, 1.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        directory = crash / STAMP
        names = sorted(p.name for p in directory.iterdir()) if directory.exists() else []
        if f"dump.{STAMP}" in names:
            _check_saved(directory, kept_pages)  # finished before the kill: whole
        if any(n.startswith("dump.") for n in names):
            assert f"dmesg.{STAMP}" in names  # the log is always saved first
        if f"dmesg.{STAMP}" in names:
            assert (directory / f"dmesg.{STAMP}").read_bytes() == DMESG_1_7_8.read_bytes()
        rerun = _collect("--vmcore", str(elf61), "--dir", str(crash), "--config", str(empty_config))
        assert rerun.returncode == 0, rerun.stderr
        _check_saved(directory, kept_pages)
        assert not list(directory.glob("*.incomplete"))


@pytest.fixture
def tiny_fs(tmp_path: Path):  # type: ignore[no-untyped-def]
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)],
            check=True, capture_output=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a small tmpfs here: {exc}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False, timeout=10)


def test_tiny_filesystem_keeps_the_log(elf61: Path, tiny_fs: Path, empty_config: Path) -> None:
    args = ("--vmcore", str(elf61), "--dir", str(tiny_fs), "--config", str(empty_config))
    run = _collect(*args)
    assert run.returncode == 1
    assert run.stderr.count("\n") == 2  # "saved the kernel log" + the one-line reason
    assert "not enough free space" in run.stderr and f"dmesg.{STAMP}" in run.stderr
    directory = tiny_fs / STAMP
    assert (directory / f"dmesg.{STAMP}").read_bytes() == DMESG_1_7_8.read_bytes()
    assert not (directory / f"dump.{STAMP}").exists()
    # Told to try anyway, the disk fills up mid-write: named as incomplete, log kept.
    run = _collect(*args, "--no-space-check")
    assert run.returncode == 1
    assert "disk filled up" in run.stderr and run.stderr.count("\n") == 2
    assert not (directory / f"dump.{STAMP}").exists()
    assert (directory / f"dump.{STAMP}.incomplete").exists()
    assert (directory / f"dmesg.{STAMP}").read_bytes() == DMESG_1_7_8.read_bytes()


FAKE_SSH = """#!/bin/sh
# Stand-in for ssh: drop the options, log the destination, run the remote command locally.
while [ $# -gt 0 ]; do
    case "$1" in
        -o|-i) shift 2 ;;
        --) shift; break ;;
        *) break ;;
    esac
done
echo "$1" >> "$FAKE_SSH_LOG"
shift
exec sh -c "$1"
"""


def test_ssh_target_streams_through_ssh(  # type: ignore[no-untyped-def]
    elf61: Path, tmp_path: Path, empty_config: Path, kept_pages
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(FAKE_SSH)
    (bin_dir / "ssh").chmod(0o755)
    remote = tmp_path / "remote dir; touch pwned"  # hostile-looking but valid path
    for old in ("202401010000", "202501010000"):
        (remote / old).mkdir(parents=True)
    (remote / "keep-me").mkdir()
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    env["FAKE_SSH_LOG"] = str(tmp_path / "ssh.log")
    run = _collect(
        "--vmcore", str(elf61), "--ssh", f"kdump@backup.example:{remote}",
        "--config", str(empty_config), "--keep", "2", env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    directory = remote / STAMP
    assert sorted(p.name for p in directory.iterdir()) == [f"dmesg.{STAMP}", f"dump.{STAMP}"]
    assert sorted(p.name for p in remote.iterdir()) == ["202501010000", STAMP, "keep-me"]
    assert (directory / f"dump.{STAMP}").read_bytes()[:12] == b"makedumpfile"  # flattened
    _check_saved(directory, kept_pages)
    destinations = set((tmp_path / "ssh.log").read_text().split())
    assert destinations == {"kdump@backup.example"}


def test_ssh_failure_is_one_line(elf61: Path, tmp_path: Path, empty_config: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text("#!/bin/sh\necho 'ssh: connect to host: refused' >&2\nexit 255\n")
    (bin_dir / "ssh").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    run = _collect(
        "--vmcore", str(elf61), "--ssh", "root@host:/var/crash", "--config", str(empty_config),
        env=env,
    )  # fmt: skip
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and "refused" in run.stderr


@pytest.mark.parametrize(
    "text", ["host", "host:relative", "-oProxyCommand=x:/d", "u@h:/a/../etc", "a b@h:/x", "h:/x\n"]
)
def test_bad_ssh_targets(text: str) -> None:
    with pytest.raises(CollectError):
        SshTarget.parse(text)


def test_ssh_target_parts() -> None:
    target = SshTarget.parse("kdump@10.0.0.1:/var/crash/")
    assert (target.destination, target.directory) == ("kdump@10.0.0.1", "/var/crash")


def test_dir_flag_beats_the_configured_ssh_target(elf61: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(f"#!/bin/sh\ntouch {tmp_path}/ssh-was-called\nexit 255\n")
    (bin_dir / "ssh").chmod(0o755)
    config = tmp_path / "k.toml"
    config.write_text('[ssh]\ntarget = "kdump@backup:/srv/crash"\n')
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    crash = tmp_path / "local"
    run = _collect("--vmcore", str(elf61), "--config", str(config), "--dir", str(crash), env=env)
    assert run.returncode == 0, run.stderr
    assert (crash / STAMP / f"dump.{STAMP}").exists()
    assert not (tmp_path / "ssh-was-called").exists()


@pytest.mark.parametrize(("level", "codec", "fmt"), [(31, "zstd", "kdump"), (1, "zlib", "kdump"),
                                                     (31, "none", "elf")])  # fmt: skip
def test_space_estimate_is_close_to_the_real_size(
    elf61: Path, tmp_path: Path, level: int, codec: str, fmt: str
) -> None:
    out = tmp_path / "dump"
    with open_dump(elf61) as src:
        filtered = exclude_unnecessary_pages(src, level)
        estimate = estimate_dump_bytes(src, filtered, codec, fmt)
        save_dump(src, str(out), dump_level=level, fmt=fmt, compress=codec, filtered=filtered)
    real = out.stat().st_size
    # Enough to fit (a little over), never wildly over (which would refuse dumps that fit).
    assert real <= estimate <= 1.6 * real, (estimate, real)
