"""The config file: defaults, every key, and one clear error for each kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdumpkit.config import Config, ConfigError, load_config, parse_config
from kdumpkit.errors import KdumpkitError

FULL = """
[dump]
dir = "/srv/crash"
level = 17
compress = "lzo"
format = "flat"
keep = 3
threads = 2
min_free_mb = 512

[ssh]
target = "dump@collector:/var/crash"
key = "/root/.ssh/kdump_id_ed25519"

[kexec]
kernel = "/boot/vmlinuz-6.1.0-56-cloud-amd64"
initrd = "/boot/initrd.img-6.1.0-56-cloud-amd64"
cmdline_append = "console=ttyS0"
cmdline_remove = ["quiet", "splash"]
"""


def test_missing_default_file_gives_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("KDUMPKIT_CONFIG", raising=False)
    monkeypatch.setattr("kdumpkit.config.DEFAULT_CONFIG_PATH", str(tmp_path / "absent.toml"))
    config = load_config()
    assert config == Config()
    assert (config.dump_dir, config.dump_level, config.compress) == ("/var/crash", 31, "zstd")
    assert config.source is None


def test_every_key(tmp_path: Path) -> None:
    path = tmp_path / "kdumpkit.toml"
    path.write_text(FULL)
    config = load_config(str(path))
    assert config == Config(
        dump_dir="/srv/crash",
        dump_level=17,
        compress="lzo",
        dump_format="flat",
        keep=3,
        ssh="dump@collector:/var/crash",
        ssh_key="/root/.ssh/kdump_id_ed25519",
        threads=2,
        min_free_mb=512,
        kernel="/boot/vmlinuz-6.1.0-56-cloud-amd64",
        initrd="/boot/initrd.img-6.1.0-56-cloud-amd64",
        cmdline_append="console=ttyS0",
        cmdline_remove=("quiet", "splash"),
        source=str(path),
    )


def test_environment_names_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "env.toml"
    path.write_text("[dump]\nlevel = 1\n")
    monkeypatch.setenv("KDUMPKIT_CONFIG", str(path))
    assert load_config().dump_level == 1
    monkeypatch.setenv("KDUMPKIT_CONFIG", str(tmp_path / "gone.toml"))
    with pytest.raises(ConfigError, match=r"gone\.toml: config file not found"):
        load_config()


def test_named_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "nope.toml"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[dump\nlevel = 1", "not valid TOML"),
        ("[dumps]\nlevel = 1", r"unknown section \[dumps\]"),
        ("[dump]\nlevl = 1", "unknown key dump.levl"),
        ('[dump]\nlevel = "31"', "dump.level = '31': must be an integer"),
        ("[dump]\nlevel = true", "dump.level = True: must be an integer"),
        ("[dump]\nlevel = 32", "must be between 0 and 31"),
        ("[dump]\nkeep = -1", "dump.keep = -1: must be between"),
        ('[dump]\ncompress = "gzip"', "must be one of none, zlib, lzo, snappy, zstd"),
        ('[dump]\nformat = "raw"', "dump.format = 'raw': must be one of kdump, flat, elf"),
        ('[dump]\ndir = "crash"', "must be an absolute path"),
        ('[ssh]\ntarget = "collector"', "ssh.target = 'collector': must look like"),
        ("[kexec]\ncmdline_remove = [1, 2]", "must be a list of strings"),
        ("dump = 3", "dump must be a \\[dump\\] table"),
    ],
)
def test_mistakes_name_file_key_and_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(str(path))
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, KdumpkitError)


def test_cmdline_remove_accepts_a_string() -> None:
    assert parse_config('[kexec]\ncmdline_remove = "quiet splash"').cmdline_remove == (
        "quiet",
        "splash",
    )


def test_binary_and_directory_are_errors(tmp_path: Path) -> None:
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe[dump]")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(str(tmp_path / "bin.toml"))
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(str(tmp_path))
