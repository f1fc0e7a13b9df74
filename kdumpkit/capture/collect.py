"""Save /proc/vmcore and its kernel log in the capture kernel (Debian kdump-tools layout).

Local target: ``<dir>/<YYYYMMDDHHMM>/dmesg.<stamp>`` then ``dump.<stamp>``, the
stamp from the crash time (VMCOREINFO ``CRASHTIME``, UTC) or now.  Every file is
written under ``<name>.incomplete``, fsync'd with its directory, then renamed, so
a file with its final name is always whole; the log goes first so that it
survives a dump that fails.  A free-space check before the dump, and ENOSPC
during it, leave the log and a clear message.  ``keep`` prunes old dump
directories.

SSH target ``user@host:/dir``: both files are streamed through ``ssh`` (an argv
list, never a local shell) into fixed remote commands whose only variable part
is the validated, ``shlex.quote``-d path; the dump travels in the flattened
format and is renamed by a second ``ssh`` call only after it was sent whole; ``keep``
prunes old stamp directories there too.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from kdumpkit.capture.filter import (
    DL_EXCLUDE_ZERO,
    FilterResult,
    PageClass,
    exclude_unnecessary_pages,
)
from kdumpkit.capture.save import SaveResult, default_threads, save_dump
from kdumpkit.config import INCOMPLETE_SUFFIX, STAMP_RE
from kdumpkit.dump.base import Dump
from kdumpkit.dump.errors import DumpError

INCOMPLETE = INCOMPLETE_SUFFIX
FILE_MODE = 0o600
DIR_MODE = 0o700
#: user@host:/absolute/path with a conservative character set.
_SSH_TARGET = re.compile(r"^(?:([A-Za-z0-9._-]+)@)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]):(/[^\0\n]*)$")
Log = Callable[[str], None]
CLASS_WORDS = {
    PageClass.CACHE: "cache",
    PageClass.CACHE_PRIVATE: "private cache",
    PageClass.USER: "user",
    PageClass.FREE: "free",
    PageClass.HWPOISON: "hwpoison",
    PageClass.OFFLINE: "offline",
}


class CollectError(DumpError):
    """The dump could not be saved (the message says what was kept)."""


@dataclass
class CollectSettings:
    """Where and how to save; the config file's values with the command-line overrides."""

    vmcore: str = "/proc/vmcore"
    dump_dir: str = "/var/crash"
    ssh: str | None = None
    ssh_key: str | None = None
    keep: int = 0
    dump_level: int = 31
    compress: str = "zstd"
    dump_format: str = "kdump"
    threads: int = 0
    min_free_mb: int = 64
    space_check: bool = True
    #: a kdumpkit server to send the saved dump to (``collect --upload URL``), and its token
    upload: str | None = None
    upload_token: str | None = None


@dataclass
class CollectResult:
    """What was saved where."""

    directory: str
    stamp: str
    dmesg: str | None = None
    dump: str | None = None
    save: SaveResult | None = None
    removed: list[str] = field(default_factory=list)
    already_saved: bool = False


def load_settings(config_path: str | None = None, **overrides: object) -> CollectSettings:
    """The config file's settings (``load_config``), then every override that is not None."""
    from kdumpkit.config import load_config

    config = load_config(config_path)
    settings = CollectSettings(
        dump_dir=config.dump_dir,
        ssh=config.ssh,
        ssh_key=config.ssh_key,
        keep=config.keep,
        dump_level=config.dump_level,
        compress=config.compress,
        dump_format=config.dump_format,
        threads=config.threads,
        min_free_mb=config.min_free_mb,
    )
    for name, value in overrides.items():
        if value is not None:
            setattr(settings, name, value)
    return settings


def crash_stamp(dump: Dump, now: float | None = None) -> str:
    """``YYYYMMDDHHMM`` (UTC) of the crash, from VMCOREINFO's CRASHTIME, else of now."""
    crashtime = dump.vmcoreinfo.crashtime if dump.vmcoreinfo else None
    when = crashtime if crashtime and crashtime > 0 else (now if now is not None else time.time())
    return time.strftime("%Y%m%d%H%M", time.gmtime(when))


def dmesg_bytes(dump: Dump) -> bytes:
    """The kernel log rendered as ``makedumpfile --dump-dmesg`` does."""
    from kdumpkit.kernel.printk import get_printk_records, render_dmesg

    return render_dmesg(get_printk_records(dump))


def write_dmesg(dump: Dump, path: str | os.PathLike[str]) -> int:
    """Write the kernel log to ``path`` (atomically, mode 0600); returns its size."""
    data = dmesg_bytes(dump)
    target = Path(path)
    _write_atomically(target, lambda f: f.write(data))
    return len(data)


# --- local files ---------------------------------------------------------------------------


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or create in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_private(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # an earlier attempt's file may have other bits
    return os.fdopen(fd, "wb")


def _write_atomically(target: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``target`` via ``target.incomplete``: fsync, rename, fsync the directory."""
    partial = target.with_name(target.name + INCOMPLETE)
    with _open_private(partial) as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(partial, target)
    fsync_dir(target.parent)


def free_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes an unprivileged-reserve-respecting writer may still use under ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def estimate_dump_bytes(
    src: Dump, filtered: FilterResult, compress: str, dump_format: str, *, samples: int = 512
) -> int:
    """The dump's size, from compressing a sample of the pages it will hold.

    Up to ``samples`` kept pages spread over the whole range are compressed with the
    chosen codec (zero pages cost nothing at dump level bit 1); the mean times the kept
    pages, plus the kdump descriptors and bitmaps, plus 10%.
    """
    from kdumpkit.dump.compress import get_codec

    page_size = filtered.page_size
    kept_pages = filtered.kept_pages
    if kept_pages == 0:
        return 2 * page_size
    picks = filtered.kept_sample(samples)  # no array of every kept pfn
    compressing = dump_format != "elf" and compress != "none"
    codec = get_codec(compress) if compressing else None
    drop_zero = bool(filtered.dump_level & DL_EXCLUDE_ZERO)
    total = 0
    for pfn in picks.tolist():
        page = src.read_page(pfn, zero_missing=True)
        if drop_zero and not any(page):
            continue
        total += min(len(codec.compress(page)), page_size) if codec else page_size
    data = total * kept_pages // len(picks)
    overhead = 24 * kept_pages + filtered.max_pfn // 4 + 64 * page_size
    return int((data + overhead) * 1.1)


def prune_dumps(dump_dir: str | os.PathLike[str], keep: int, current: str) -> list[str]:
    """Remove the oldest ``<stamp>`` directories beyond the newest ``keep`` (0: keep all)."""
    if keep <= 0:
        return []
    root = Path(dump_dir)
    stamps = sorted(p.name for p in root.iterdir() if p.is_dir() and STAMP_RE.match(p.name))
    removed = []
    for name in stamps[: max(0, len(stamps) - keep)]:
        if name == current:
            continue
        shutil.rmtree(root / name)
        removed.append(str(root / name))
    if removed:
        fsync_dir(root)
    return removed


def collect_local(
    src: Dump, settings: CollectSettings, *, log: Log, now: float | None = None
) -> CollectResult:
    """Save the log and the dump under ``settings.dump_dir/<stamp>/``."""
    stamp = crash_stamp(src, now)
    root = Path(settings.dump_dir)
    directory = root / stamp
    result = CollectResult(str(directory), stamp)
    dump_path = directory / f"dump.{stamp}"
    dmesg_path = directory / f"dmesg.{stamp}"
    os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
    fsync_dir(root)
    if dump_path.exists():
        result.already_saved = True
        result.dump = str(dump_path)
        result.dmesg = str(dmesg_path) if dmesg_path.exists() else None
        log(f"{dump_path} already saved")
        return result
    try:
        write_dmesg(src, dmesg_path)
        result.dmesg = str(dmesg_path)
        log(f"saved the kernel log to {dmesg_path}")
    except DumpError as exc:
        log(f"warning: no kernel log: {exc}")
    except OSError as exc:
        raise CollectError(f"{dmesg_path}: cannot write the kernel log: {exc.strerror}") from None

    filtered = exclude_unnecessary_pages(src, settings.dump_level)
    kept_log = f"; the kernel log is in {dmesg_path}" if result.dmesg else ""
    if settings.space_check:
        need = max(
            estimate_dump_bytes(src, filtered, _compression(settings), settings.dump_format),
            settings.min_free_mb << 20,
        )
        have = free_bytes(directory)
        if have < need:
            raise CollectError(
                f"{directory}: not enough free space for the dump ({have >> 20} MiB free, "
                f"about {need >> 20} MiB needed){kept_log}"
            )
    partial = dump_path.with_name(dump_path.name + INCOMPLETE)
    try:
        with _open_private(partial) as f:
            result.save = save_dump(
                src, f, dump_level=settings.dump_level, fmt=settings.dump_format,
                compress=_compression(settings), threads=settings.threads, filtered=filtered,
            )  # fmt: skip
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CollectError(
                f"{directory}: the disk filled up while writing the dump; the partial dump "
                f"is {partial}{kept_log}"
            ) from None
        raise
    os.rename(partial, dump_path)
    fsync_dir(directory)
    result.dump = str(dump_path)
    log(f"saved the dump to {dump_path}: {summary(result.save)}; {resources(settings)}")
    result.removed = prune_dumps(root, settings.keep, stamp)
    for path in result.removed:
        log(f"removed the old dump {path}")
    return result


def summary(saved: SaveResult | None) -> str:
    """One line: pages written, of how many, and the largest excluded classes."""
    if saved is None:
        return "nothing written"
    filtered = saved.filter
    parts = [f"{n} {CLASS_WORDS[cls]}" for cls, n in filtered.excluded.items() if n]
    if saved.zero_pages:
        parts.append(f"{saved.zero_pages} zero")
    excluded = ", ".join(parts) or "none"
    return (
        f"{saved.remaining_pages} of {filtered.ram_pages} RAM pages, "
        f"{saved.write.file_size >> 20} MiB (excluded: {excluded})"
    )


def resources(settings: CollectSettings) -> str:
    """What the capture used: its compression threads and peak resident memory — the
    figures the reservation must cover (``kdumpkit estimate`` counts them)."""
    threads = settings.threads or default_threads()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return f"{threads} thread{'s' if threads != 1 else ''}, peak memory {peak:.0f} MiB"


def _compression(settings: CollectSettings) -> str:
    return "none" if settings.dump_format == "elf" else settings.compress


# --- ssh target ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SshTarget:
    """``user@host:/dir`` split and checked."""

    destination: str
    directory: str

    @classmethod
    def parse(cls, text: str) -> SshTarget:
        """Check the target's form; the path must be absolute and is quoted when used."""
        match = _SSH_TARGET.fullmatch(text)
        if not match or match.group(2).startswith("-"):
            raise CollectError(f"ssh target {text!r} is not user@host:/absolute/dir")
        user, host, directory = match.groups()
        if ".." in directory.split("/"):
            raise CollectError(f"ssh target {text!r}: the path may not contain '..'")
        return cls(f"{user}@{host}" if user else host, directory.rstrip("/") or "/")


def _ssh_argv(target: SshTarget, key: str | None, remote_command: str) -> list[str]:
    argv = ["ssh", "-o", "BatchMode=yes"]
    if key:
        argv += ["-i", key]
    return [*argv, "--", target.destination, remote_command]


def _run_ssh(argv: list[str], data: bytes | None = None) -> bytes:
    try:
        run = subprocess.run(argv, input=data or b"", capture_output=True, check=False)
    except FileNotFoundError:
        raise CollectError("ssh is not installed") from None
    if run.returncode != 0:
        detail = run.stderr.decode(errors="replace").strip().splitlines()
        raise CollectError(f"ssh {argv[-2]} failed: {detail[-1] if detail else run.returncode}")
    return run.stdout


def prune_remote_dumps(target: SshTarget, key: str | None, keep: int, current: str) -> list[str]:
    """Remove the oldest ``<stamp>`` directories on the ssh target beyond the newest ``keep``.

    The listing is parsed here; only names of the stamp form are ever removed, each
    quoted, under the validated directory.
    """
    if keep <= 0:
        return []
    listing = _run_ssh(_ssh_argv(target, key, f"ls -1 -- {shlex.quote(target.directory)}"))
    stamps = sorted(
        name for name in listing.decode(errors="replace").split() if STAMP_RE.fullmatch(name)
    )
    doomed = [name for name in stamps[: max(0, len(stamps) - keep)] if name != current]
    if doomed:
        paths = " ".join(shlex.quote(f"{target.directory}/{name}") for name in doomed)
        _run_ssh(_ssh_argv(target, key, f"rm -rf -- {paths}"))
    return [f"{target.destination}:{target.directory}/{name}" for name in doomed]


def collect_ssh(
    src: Dump, settings: CollectSettings, *, log: Log, now: float | None = None
) -> CollectResult:
    """Stream the log and the flattened dump to ``settings.ssh``."""
    assert settings.ssh is not None
    target = SshTarget.parse(settings.ssh)
    stamp = crash_stamp(src, now)
    remote_dir = f"{target.directory}/{stamp}"
    q_dir = shlex.quote(remote_dir)
    result = CollectResult(f"{target.destination}:{remote_dir}", stamp)
    key = settings.ssh_key

    def remote(name: str) -> tuple[str, str]:
        return shlex.quote(f"{remote_dir}/{name}{INCOMPLETE}"), shlex.quote(f"{remote_dir}/{name}")

    try:
        log_data = dmesg_bytes(src)
    except DumpError as exc:
        log(f"warning: no kernel log: {exc}")
        log_data = None
    if log_data is not None:
        partial, final = remote(f"dmesg.{stamp}")
        command = f"umask 077 && mkdir -p {q_dir} && cat > {partial} && mv -f {partial} {final}"
        _run_ssh(_ssh_argv(target, key, command), log_data)
        result.dmesg = f"{result.directory}/dmesg.{stamp}"
        log(f"saved the kernel log to {result.dmesg}")

    partial, final = remote(f"dump.{stamp}")
    argv = _ssh_argv(target, key, f"umask 077 && mkdir -p {q_dir} && cat > {partial}")
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise CollectError("ssh is not installed") from None
    assert proc.stdin is not None and proc.stderr is not None
    failure: str | None = None
    try:
        fmt = "elf" if settings.dump_format == "elf" else "flat"
        result.save = save_dump(
            src, proc.stdin, dump_level=settings.dump_level, fmt=fmt,
            compress=_compression(settings), threads=settings.threads,
        )  # fmt: skip
        proc.stdin.close()
    except (BrokenPipeError, ConnectionError) as exc:
        failure = str(exc)
    finally:
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
        stderr = proc.stderr.read().decode(errors="replace").strip()
        proc.wait()
    if failure is not None or proc.returncode != 0:
        last = stderr.splitlines()[-1] if stderr else failure or f"exit {proc.returncode}"
        kept = f"; the kernel log is in {result.dmesg}" if result.dmesg else ""
        raise CollectError(
            f"sending the dump to {target.destination} failed ({last}); the partial dump is "
            f"{remote_dir}/dump.{stamp}{INCOMPLETE}{kept}"
        )
    _run_ssh(_ssh_argv(target, key, f"mv -f {partial} {final}"))
    result.dump = f"{result.directory}/dump.{stamp}"
    log(f"saved the dump to {result.dump}: {summary(result.save)}; {resources(settings)}")
    result.removed = prune_remote_dumps(target, key, settings.keep, stamp)
    for path in result.removed:
        log(f"removed the old dump {path}")
    return result


def collect(settings: CollectSettings, *, log: Log | None = None) -> CollectResult:
    """Save ``settings.vmcore``'s log and dump to the local directory or the ssh target."""
    from kdumpkit.dump.open import open_dump

    def stderr_log(message: str) -> None:
        print(f"kdumpkit collect: {message}", file=sys.stderr)

    with open_dump(settings.vmcore) as src:
        if settings.ssh:
            return collect_ssh(src, settings, log=log or stderr_log)
        return collect_local(src, settings, log=log or stderr_log)
