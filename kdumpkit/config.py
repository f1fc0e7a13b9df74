"""The one kdumpkit config file (TOML), read by both the service and the capture side.

Layout::

    [dump]
    dir = "/var/crash"        # where dumps go
    level = 31                # makedumpfile dump level, 0..31
    compress = "zstd"         # none | zlib | lzo | snappy | zstd
    format = "kdump"          # kdump | flat | elf
    keep = 0                  # keep the newest N dumps, 0 = all
    threads = 0               # 0 = auto
    min_free_mb = 64          # refuse to start a dump with less free space

    [ssh]
    target = "user@host:/dir"
    key = "/root/.ssh/kdump_id_ed25519"

    [kexec]
    kernel = "/boot/vmlinuz-..."     # capture kernel, default: the running one
    initrd = "/boot/initrd.img-..."
    cmdline_append = "..."
    cmdline_remove = ["quiet", "splash"]

A missing *default* file means defaults; a file named explicitly (argument or
``KDUMPKIT_CONFIG``) must exist.  Every problem raises :class:`ConfigError` whose
one-line message names the file, the key and what is wrong.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, fields
from typing import Any

from kdumpkit.errors import KdumpkitError

DEFAULT_CONFIG_PATH = "/etc/kdumpkit.toml"
CONFIG_ENV = "KDUMPKIT_CONFIG"

COMPRESSIONS = ("none", "zlib", "lzo", "snappy", "zstd")
DUMP_FORMATS = ("kdump", "flat", "elf")
MAX_CONFIG_BYTES = 1 << 20
#: The dump directory's layout (Debian kdump-tools'): ``<dir>/<stamp>/dump.<stamp>``, the
#: stamp YYYYMMDDHHMM; a file being written carries this suffix until it is whole.
INCOMPLETE_SUFFIX = ".incomplete"
STAMP_RE = re.compile(r"^\d{12}$")

_SSH_TARGET = re.compile(r"^(?:[^@\s:/]+@)?[^@\s:/]+:/\S*$")


class ConfigError(KdumpkitError):
    """The config file is missing, unreadable, not TOML, or holds a bad key or value."""


@dataclass
class Config:
    """Settings shared by the service (load, setup) and the capture (collect, save)."""

    dump_dir: str = "/var/crash"
    dump_level: int = 31
    compress: str = "zstd"
    dump_format: str = "kdump"
    keep: int = 0
    ssh: str | None = None
    ssh_key: str | None = None
    threads: int = 0
    min_free_mb: int = 64
    kernel: str | None = None
    initrd: str | None = None
    cmdline_append: str = ""
    cmdline_remove: tuple[str, ...] = ()
    #: CPUs the capture kernel brings up (and collect compresses on); 0: as many as the
    #: reservation pays for, at most service.plan.AUTO_CAPTURE_CPUS
    capture_cpus: int = 0
    #: the file these settings came from, None when they are the built-in defaults
    source: str | None = None


#: (section, key) in the file -> Config field
_KEYS: dict[tuple[str, str], str] = {
    ("dump", "dir"): "dump_dir",
    ("dump", "level"): "dump_level",
    ("dump", "compress"): "compress",
    ("dump", "format"): "dump_format",
    ("dump", "keep"): "keep",
    ("dump", "threads"): "threads",
    ("dump", "min_free_mb"): "min_free_mb",
    ("ssh", "target"): "ssh",
    ("ssh", "key"): "ssh_key",
    ("kexec", "kernel"): "kernel",
    ("kexec", "initrd"): "initrd",
    ("kexec", "cmdline_append"): "cmdline_append",
    ("kexec", "cmdline_remove"): "cmdline_remove",
    ("kexec", "capture_cpus"): "capture_cpus",
}
_SECTIONS = sorted({section for section, _ in _KEYS})


def config_path(path: str | None = None) -> tuple[str, bool]:
    """The config file to read and whether it was named explicitly (so must exist)."""
    if path is not None:
        return path, True
    env = os.environ.get(CONFIG_ENV)
    if env:
        return env, True
    return DEFAULT_CONFIG_PATH, False


def load_config(path: str | None = None) -> Config:
    """Read the config file: *path*, else ``$KDUMPKIT_CONFIG``, else the default path.

    A missing default file gives the defaults; a missing named file, unknown
    sections or keys, wrong types and bad values raise :class:`ConfigError`.
    """
    path, explicit = config_path(path)
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{path}: config file not found") from None
        return Config()
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: config file larger than {MAX_CONFIG_BYTES} bytes")
    return parse_config(raw, path)


def parse_config(raw: bytes | str, path: str = "<config>") -> Config:
    """Parse config text; *path* only names the file in error messages."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        document = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for section, table in document.items():
        if section not in _SECTIONS:
            raise ConfigError(
                f"{path}: unknown section [{section}] (known: {', '.join(_SECTIONS)})"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {section} must be a [{section}] table")
        for key, value in table.items():
            field = _KEYS.get((section, key))
            if field is None:
                known = ", ".join(k for s, k in _KEYS if s == section)
                raise ConfigError(f"{path}: unknown key {section}.{key} (known: {known})")
            values[field] = _check_value(path, f"{section}.{key}", field, value)
    return Config(**values, source=path)


def _check_value(path: str, name: str, field: str, value: Any) -> Any:
    """Type- and range-check one value; return it in the Config field's type."""
    default = {f.name: f.default for f in fields(Config)}[field]

    def bad(what: str) -> ConfigError:
        return ConfigError(f"{path}: {name} = {value!r}: {what}")

    if field == "cmdline_remove":
        if isinstance(value, str):
            value = value.split()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("must be a list of strings (parameter names to drop)")
        if any(not v or any(c.isspace() for c in v) for v in value):
            raise bad("entries must be single non-empty words")
        return tuple(value)
    if isinstance(default, int):
        # bool is an int in Python but `level = true` is a mistake
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad("must be an integer")
        limits = {"dump_level": (0, 31), "capture_cpus": (0, 1024)}.get(field, (0, 1 << 20))
        if not limits[0] <= value <= limits[1]:
            raise bad(f"must be between {limits[0]} and {limits[1]}")
        return value
    if not isinstance(value, str):
        raise bad("must be a string")
    if field == "compress" and value not in COMPRESSIONS:
        raise bad(f"must be one of {', '.join(COMPRESSIONS)}")
    if field == "dump_format" and value not in DUMP_FORMATS:
        raise bad(f"must be one of {', '.join(DUMP_FORMATS)}")
    if field in ("dump_dir", "ssh_key", "kernel", "initrd") and not value.startswith("/"):
        raise bad("must be an absolute path")
    if field == "ssh" and not _SSH_TARGET.match(value):
        raise bad('must look like "user@host:/dir"')
    if "\n" in value or "\0" in value:
        raise bad("must be one line")
    return value
