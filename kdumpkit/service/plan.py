"""Decide what ``kdumpkit load`` loads, and refuse early when it cannot work.

The kernel and initramfs are: ``--kernel``/``--initrd``, else ``[kexec]`` in the
config, else the running kernel's files under /boot.  The command line is the running
one turned into a capture command line (cmdline.py), plus
``systemd.unit=kdumpkit-collect.service`` when that unit is installed, so a systemd
machine boots the capture kernel straight into the collector.
"""

from __future__ import annotations

import json
import os

from kdumpkit.config import Config
from kdumpkit.service.cmdline import capture_cmdline, user_nr_cpus
from kdumpkit.service.crashkernel import format_size
from kdumpkit.service.errors import ServiceError
from kdumpkit.service.estimate import estimate_machine, wanted_capture_cpus
from kdumpkit.service.host import Host
from kdumpkit.service.images import (
    first_existing,
    initrd_candidates,
    inspect_initrd,
    inspect_kernel,
    kernel_candidates,
)
from kdumpkit.service.kexec import LoadPlan

COLLECT_UNIT = "kdumpkit-collect.service"
STATE_FILES = ("/run/kdumpkit/loaded.json", "/tmp/kdumpkit/loaded.json")
UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")


def collect_unit_installed(host: Host) -> bool:
    """Whether the capture-side systemd unit is installed on the machine."""
    return any(host.path(f"{folder}/{COLLECT_UNIT}").is_file() for folder in UNIT_DIRS)


def plan_load(
    host: Host,
    config: Config,
    kernel: str | None = None,
    initrd: str | None = None,
    append: str = "",
    no_initrd: bool = False,
) -> LoadPlan:
    """The kernel, initramfs and command line to load (ServiceError if a file is missing)."""
    kernels = kernel_candidates(host, config, kernel)
    kernel_path = first_existing(host, kernels)
    if kernel_path is None:
        raise ServiceError(
            f"capture kernel not found (tried {', '.join(kernels)}); "
            "name one with --kernel or [kexec] kernel in the config"
        )
    initrd_path = None
    if not no_initrd:
        initrds = initrd_candidates(host, config, initrd)
        initrd_path = first_existing(host, initrds)
        if initrd_path is None:
            raise ServiceError(
                f"initramfs not found (tried {', '.join(initrds)}); name one "
                "with --initrd or [kexec] initrd, or pass --no-initrd"
            )
    extra = [f"systemd.unit={COLLECT_UNIT}"] if collect_unit_installed(host) else []
    user_append = " ".join(part for part in (config.cmdline_append, append) if part)
    cpus = user_nr_cpus(user_append) or capture_cpus(host, config, kernel_path, initrd_path)
    if cpus > 1:
        apicid = host.boot_cpu_apicid()
        if apicid is not None:
            # The capture kernel must not wake the crashed kernel's boot CPU with INIT
            # (it resets or hangs some machines); x86 only, as kdump-utils does.
            extra.append(f"disable_cpu_apicid={apicid}")
    cmdline = capture_cmdline(host.cmdline(), config.cmdline_remove, user_append, extra, cpus)
    return LoadPlan(kernel_path, initrd_path, cmdline)


def capture_cpus(
    host: Host, config: Config, kernel: str | None = None, initrd: str | None = None
) -> int:
    """The CPUs the capture kernel brings up: as wanted (estimate.wanted_capture_cpus) when
    set by the user, else the most, up to that, whose estimate fits the reservation —
    a small reservation gets one CPU rather than a capture kernel that runs out of memory."""
    wanted = wanted_capture_cpus(host, config)
    if config.capture_cpus or wanted <= 1:
        return wanted
    reserved = host.crash_size() or 0
    for cpus in range(wanted, 1, -1):
        if estimate_machine(host, config, kernel, initrd, capture_cpus=cpus).size <= reserved:
            return cpus
    return 1


def preflight(host: Host, plan: LoadPlan) -> list[str]:
    """Reasons the load cannot succeed, found before touching the kernel (empty: go)."""
    problems = []
    reserved = host.crash_size()
    if reserved is None:
        problems.append(
            f"this kernel ({host.kernel_release()}) has no kexec support: "
            "/sys/kernel/kexec_crash_size is missing (CONFIG_KEXEC_CORE / "
            "CONFIG_CRASH_DUMP not built in)"
        )
        return problems
    if reserved == 0:
        problems.append(
            "no memory is reserved for the capture kernel (kexec_crash_size is "
            "0): add crashkernel= to the kernel command line (kdumpkit setup "
            "--apply) and reboot"
        )
        return problems
    try:
        kernel = inspect_kernel(str(host.path(plan.kernel)), plan.kernel)
        needed = kernel.memory_needed
        if plan.initrd:
            needed += inspect_initrd(str(host.path(plan.initrd)), plan.initrd).file_size
    except OSError as exc:
        problems.append(f"cannot read {exc.filename}: {exc.strerror}")
        return problems
    if needed > reserved:
        problems.append(
            f"the reservation is too small: {format_size(reserved)} reserved, but "
            f"the kernel and initramfs alone need {needed / (1 << 20):.1f} MiB; "
            "reserve more (kdumpkit estimate, setup --apply) and reboot"
        )
    return problems


def record_load(host: Host, plan: LoadPlan, method: str) -> None:
    """Remember what was loaded for ``status`` and ``check`` (best effort).

    /run/kdumpkit first; /tmp/kdumpkit when /run is not writable (a read-only root, as
    in the testbed guest).
    """
    text = (
        json.dumps(
            {
                "kernel": plan.kernel,
                "initrd": plan.initrd,
                "cmdline": plan.cmdline,
                "method": method,
            }
        )
        + "\n"
    )
    for state_file in STATE_FILES:
        path = host.path(state_file)
        try:
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
            return
        except OSError:
            continue


def forget_load(host: Host) -> None:
    """Drop the record of the loaded kernel."""
    for state_file in STATE_FILES:
        try:
            host.path(state_file).unlink()
        except OSError:
            pass


def recorded_load(host: Host) -> dict[str, str] | None:
    """What ``kdumpkit load`` last loaded, if it recorded it."""
    for state_file in STATE_FILES:
        path = host.path(state_file)
        try:
            info = path.stat()
        except OSError:
            continue
        # only trust a record root wrote and nobody else can change (/tmp is shared)
        if info.st_uid != os.geteuid() or info.st_mode & 0o022:
            continue
        text = host.read_text(state_file)
        try:
            record = json.loads(text) if text else None
        except ValueError:
            return None
        return record if isinstance(record, dict) else None
    return None
