"""A real Debian machine under QEMU (TCG), driven through its serial console.

The machine boots from its disk as a server does: SeaBIOS, GRUB, the kernel and initramfs
from /boot, systemd, a root shell on ttyS0 (autologin). It keeps running across guest
reboots (no ``-no-reboot``): a kdump cycle goes normal kernel → panic → capture kernel →
reboot → normal kernel inside one QEMU process. Commands are typed at the shell with
markers around them; every console line is kept with its host time.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vm import Guest, TestbedError

QEMU = "qemu-system-x86_64"
BOOT_TIMEOUT_S = 900.0
LOGIN = r"login: root \(automatic login\)"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class Command:
    """What a command typed at the guest's shell printed, and its exit status."""

    command: str
    status: int
    output: str
    seconds: float


class Machine:
    """One QEMU machine booted from ``disk`` (a qcow2 overlay); ``extra_disks`` are
    attached read-only after it (/dev/vdb, ...)."""

    def __init__(
        self,
        disk: Path,
        console: Path,
        mem_mib: int = 2048,
        cpus: int = 2,
        extra_disks: tuple[Path, ...] = (),
        timeout_s: float = 3600,
    ) -> None:
        command = [
            QEMU, "-accel", "tcg", "-cpu", "max", "-m", str(mem_mib), "-smp", str(cpus),
            "-nodefaults", "-display", "none", "-serial", "stdio", "-vga", "none",
            "-drive", f"file={disk},format=qcow2,if=virtio",
        ]  # fmt: skip
        for extra in extra_disks:
            command += ["-drive", f"file={extra},format=raw,if=virtio,readonly=on"]
        if shutil.which("timeout"):
            command = ["timeout", "-k", "5", str(int(timeout_s)), *command]
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.guest = Guest(process, console)
        self._reader = threading.Thread(target=self.guest._read_console, daemon=True)
        self._reader.start()
        self._serial = 0
        self.mark = 0  # console lines before this index are done with

    def __enter__(self) -> Machine:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.guest.kill()
        self._reader.join(timeout=5)

    def wait(self, pattern: str, timeout_s: float = BOOT_TIMEOUT_S) -> tuple[float, str]:
        """Wait for a console line matching ``pattern`` after the mark; move the mark past it."""
        index, seen, line = self.guest.wait_line(
            pattern, time.monotonic() + timeout_s, start=self.mark
        )
        self.mark = index + 1
        return seen, line

    def type(self, text: str) -> None:
        stdin = self.guest.process.stdin
        assert stdin is not None
        stdin.write(text.encode())
        stdin.flush()

    def wait_for_shell(self, timeout_s: float = BOOT_TIMEOUT_S) -> float:
        """Wait for the autologin root shell; quiet the console; return the host time."""
        seen, _ = self.wait(LOGIN, timeout_s)
        deadline = time.monotonic() + 120
        while True:  # the shell may take a moment after the login line
            self._serial += 1
            token = f"KDTB_READY_{self._serial}"
            self.type(f"\n echo {token[:5]}''{token[5:]}\n")
            try:
                self.wait(f"{token}$", timeout_s=10)
                break
            except TestbedError:
                if time.monotonic() > deadline:
                    raise
        self.run(
            "stty -echo; bind 'set enable-bracketed-paste off'; dmesg -n 1; "
            "export TERM=dumb PAGER=cat SYSTEMD_PAGER=cat SYSTEMD_COLORS=0"
        )
        return seen

    def run(self, command: str, timeout_s: float = 900) -> Command:
        """Type ``command`` at the shell; its output and exit status."""
        self._serial += 1
        begin, end = f"KDTB_BEGIN_{self._serial}", f"KDTB_END_{self._serial}"
        # The markers are printed by echo from split words, so the typed line (if echoed)
        # never matches them.
        self.type(
            f"echo {begin[:5]}''{begin[5:]}; {command}; echo {end[:5]}''{end[5:]} status=$?\n"
        )
        started = time.monotonic()
        self.wait(f"{begin}$", timeout_s)
        start = self.mark
        _, line = self.wait(f"{end} status=\\d+$", timeout_s)
        lines = [ANSI.sub("", text) for _, text in self.guest.lines[start : self.mark - 1]]
        status = int(line.rsplit("=", 1)[1])
        return Command(command, status, "\n".join(lines), time.monotonic() - started)

    def check(self, command: str, timeout_s: float = 900) -> Command:
        """``run``, failing unless the command exits 0."""
        result = self.run(command, timeout_s)
        if result.status != 0:
            raise TestbedError(f"`{command}` exited {result.status}:\n{result.output[-3000:]}")
        return result

    def send(self, command: str) -> None:
        """Type a command whose end is not waited for (a reboot, a crash)."""
        self.type(f"{command}\n")

    def wait_exit(self, timeout_s: float = 300) -> int:
        return self.guest.wait_exit(time.monotonic() + timeout_s)


def overlay(base: Path, path: Path) -> Path:
    """A copy-on-write qcow2 overlay of ``base`` at ``path``."""
    path.unlink(missing_ok=True)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(path)],
        check=True,
    )
    return path


def copy_out(disk: Path, guest_dir: str, dest: Path) -> None:
    """Copy ``guest_dir`` out of the disk's root partition (debugfs: no mount needed)."""
    raw = dest.parent / f".{disk.name}.part.raw"
    try:
        subprocess.run(
            ["qemu-img", "dd", "-f", "qcow2", "-O", "raw", f"if={disk}", f"of={raw}",
             "bs=1M", "skip=1"],
            check=True,
        )  # fmt: skip
        dest.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["debugfs", "-R", f"rdump {shlex.quote(guest_dir)} {dest}", str(raw)],
            check=True,
            capture_output=True,
        )
    finally:
        raw.unlink(missing_ok=True)


def first(pattern: str, text: str) -> str | None:
    match = re.search(pattern, text, re.MULTILINE)
    return match.group(0) if match else None
