"""What the service side reads about the running machine, every path under one root prefix.

Tests build a fake machine in a temporary directory (``proc/cmdline``,
``sys/kernel/kexec_crash_size``, ``boot/vmlinuz-...``) and pass it as *root*; on a real
machine the root is ``/``.  Nothing here writes, and nothing needs more than /proc,
/sys and the files it names, so it works inside a minimal busybox capture guest.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from kdumpkit.config import DEFAULT_CONFIG_PATH, Config, config_path, load_config

#: EFI global variable GUID; SecureBoot-<guid> holds 4 attribute bytes then the value
EFI_GLOBAL_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
MAX_TEXT = 4 << 20


@dataclass(frozen=True)
class Host:
    """A machine seen through a root prefix (``/`` for the real one)."""

    root: str = "/"

    def path(self, absolute: str) -> Path:
        """The host path of *absolute* (a path as the machine itself names it)."""
        return Path(self.root) / absolute.lstrip("/")

    def read_text(self, absolute: str) -> str | None:
        """The text of a small file, or None when it is missing or unreadable."""
        try:
            with open(self.path(absolute), "rb") as file:
                return file.read(MAX_TEXT).decode("utf-8", "replace")
        except OSError:
            return None

    def exists(self, absolute: str) -> bool:
        """Whether *absolute* exists on the machine."""
        return self.path(absolute).exists()

    # -- kernel -----------------------------------------------------------------------

    def kernel_release(self) -> str:
        """``uname -r`` of the machine (from /proc/sys/kernel/osrelease)."""
        text = self.read_text("/proc/sys/kernel/osrelease")
        if text and text.strip():
            return text.strip()
        return os.uname().release

    def cmdline(self) -> str:
        """The running kernel's command line (/proc/cmdline), empty if unreadable."""
        return (self.read_text("/proc/cmdline") or "").strip()

    def kernel_config(self) -> tuple[dict[str, str], str] | None:
        """The running kernel's build config as {"CONFIG_X": "y"}, and where it came from.

        /boot/config-$(uname -r) first, then /proc/config.gz (CONFIG_IKCONFIG_PROC).
        """
        boot = f"/boot/config-{self.kernel_release()}"
        text = self.read_text(boot)
        source = boot
        if text is None:
            source = "/proc/config.gz"
            try:
                with open(self.path(source), "rb") as file:
                    text = gzip.decompress(file.read(MAX_TEXT)).decode("utf-8", "replace")
            except (OSError, EOFError, zlib.error):
                return None
        options: dict[str, str] = {}
        for line in text.splitlines():
            match = re.match(r"^(CONFIG_\w+)=(.*)$", line)
            if match:
                options[match.group(1)] = match.group(2)
            else:
                match = re.match(r"^# (CONFIG_\w+) is not set", line)
                if match:
                    options[match.group(1)] = "n"
        return options, source

    # -- kexec state ------------------------------------------------------------------

    def sysfs_int(self, absolute: str) -> int | None:
        """An integer sysfs attribute, None when absent or not a number."""
        text = self.read_text(absolute)
        try:
            return int(text.strip(), 0) if text is not None else None
        except ValueError:
            return None

    def crash_size(self) -> int | None:
        """Bytes reserved for the capture kernel, None when the kernel has no kexec."""
        return self.sysfs_int("/sys/kernel/kexec_crash_size")

    def crash_loaded(self) -> bool | None:
        """Whether a capture kernel is loaded, None when the kernel has no kexec."""
        value = self.sysfs_int("/sys/kernel/kexec_crash_loaded")
        return None if value is None else value == 1

    def crash_regions(self) -> list[tuple[int, int]]:
        """The "Crash kernel" ranges of /proc/iomem as (start, end inclusive)."""
        regions = []
        for line in (self.read_text("/proc/iomem") or "").splitlines():
            match = re.match(r"^\s*([0-9a-f]+)-([0-9a-f]+) : Crash kernel$", line)
            if match:
                regions.append((int(match.group(1), 16), int(match.group(2), 16)))
        return regions

    def lockdown(self) -> str | None:
        """The kernel lockdown mode (none, integrity, confidentiality) or None if unknown."""
        text = self.read_text("/sys/kernel/security/lockdown")
        if text is None:
            return None
        match = re.search(r"\[(\w+)\]", text)
        return match.group(1) if match else None

    def secure_boot(self) -> bool | None:
        """Whether UEFI Secure Boot is on, None when not booted with EFI or unknown."""
        if not self.exists("/sys/firmware/efi"):
            return None
        try:
            with open(
                self.path(f"/sys/firmware/efi/efivars/SecureBoot-{EFI_GLOBAL_GUID}"), "rb"
            ) as file:
                data = file.read(16)
        except OSError:
            return None
        return len(data) >= 5 and data[4] == 1

    # -- memory and CPUs -----------------------------------------------------------------

    def meminfo(self) -> dict[str, int]:
        """/proc/meminfo in bytes."""
        values = {}
        for line in (self.read_text("/proc/meminfo") or "").splitlines():
            match = re.match(r"^(\w+):\s+(\d+)(?: kB)?$", line)
            if match:
                values[match.group(1)] = int(match.group(2)) * 1024
        return values

    def system_ram(self) -> tuple[int, str]:
        """Total System RAM in bytes and how it was found.

        The kernel picks a crashkernel= range by the memblock total, which is the sum of
        the top-level "System RAM" ranges of /proc/iomem.  Unprivileged readers see the
        addresses as zeros; then MemTotal (slightly less: it lacks the kernel image and
        reservations) is the fallback.
        """
        total = 0
        for line in (self.read_text("/proc/iomem") or "").splitlines():
            match = re.match(r"^([0-9a-f]+)-([0-9a-f]+) : System RAM$", line)
            if match:
                total += int(match.group(2), 16) - int(match.group(1), 16) + 1
        if total > 1 << 20:
            return total, "System RAM in /proc/iomem"
        return self.meminfo().get("MemTotal", 0), "MemTotal in /proc/meminfo"

    def online_cpus(self) -> int:
        """Number of online CPUs (/sys/devices/system/cpu/online), at least 1."""
        text = (self.read_text("/sys/devices/system/cpu/online") or "").strip()
        count = 0
        for part in filter(None, text.split(",")):
            low, _, high = part.partition("-")
            try:
                count += (int(high) - int(low) + 1) if high else 1
            except ValueError:
                return os.cpu_count() or 1
        if count:
            return count
        return (os.cpu_count() or 1) if self.root == "/" else 1

    def boot_cpu_apicid(self) -> int | None:
        """The APIC ID of CPU 0 (/proc/cpuinfo's ``apicid``), None where there is none
        (not x86)."""
        processor = None
        for line in (self.read_text("/proc/cpuinfo") or "").splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "processor":
                processor = value
            elif key == "apicid" and processor == "0" and value.isdigit():
                return int(value)
        return None

    # -- config ------------------------------------------------------------------------

    def config_file(self, path: str | None = None) -> str:
        """The config file path on the host: explicit *path* as given, else under the root."""
        chosen, explicit = config_path(path)
        if explicit:
            return chosen
        return str(self.path(DEFAULT_CONFIG_PATH))

    def load_config(self, path: str | None = None) -> Config:
        """The kdumpkit config of this machine (ConfigError when it is broken)."""
        chosen, explicit = config_path(path)
        if explicit:
            return load_config(chosen)
        host_path = self.path(DEFAULT_CONFIG_PATH)
        if not host_path.exists():
            return Config()
        return load_config(str(host_path))
