"""``kdumpkit check``: is this machine ready to take a crash dump, and if not, what to do.

Every item is OK, WARN or FAIL with a fix; any FAIL means a crash now would not be
saved.  Everything is read through a :class:`~kdumpkit.service.host.Host`, so tests
simulate machines with a temporary root.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from kdumpkit.config import INCOMPLETE_SUFFIX, STAMP_RE, Config, ConfigError
from kdumpkit.service.crashkernel import effective_crashkernel, format_size
from kdumpkit.service.errors import CrashkernelError
from kdumpkit.service.estimate import Estimate, estimate_machine
from kdumpkit.service.host import Host
from kdumpkit.service.images import (
    KernelImage,
    first_existing,
    initrd_candidates,
    inspect_kernel,
    kernel_candidates,
)
from kdumpkit.service.plan import recorded_load

OK, WARN, FAIL = "OK", "WARN", "FAIL"
MiB = 1 << 20


@dataclass(frozen=True)
class Finding:
    """One checked item: its status, what was found, and how to fix it."""

    item: str
    status: str
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        """The finding as JSON-ready data."""
        return asdict(self)


def _mib(size: int) -> str:
    return f"{size / MiB:.0f} MiB"


def check_config(host: Host, path: str | None) -> tuple[Finding, Config]:
    """The config file parses and holds valid values."""
    shown = host.config_file(path)
    try:
        config = host.load_config(path)
    except ConfigError as exc:
        return Finding("config", FAIL, str(exc), f"fix {shown} (see kdumpkit/config.py)"), Config()
    where = config.source or f"{shown} absent, defaults used"
    return Finding("config", OK, f"valid ({where})"), config


#: (item, options any of which will do, status when none is set, what it is for)
KERNEL_OPTIONS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("KEXEC_CORE", ("CONFIG_KEXEC_CORE",), FAIL, "kexec machinery"),
    (
        "KEXEC_FILE",
        ("CONFIG_KEXEC_FILE",),
        WARN,
        "kexec_file_load; without it only kexec-tools' kexec_load works, and not under lockdown",
    ),
    ("CRASH_DUMP", ("CONFIG_CRASH_DUMP",), FAIL, "crash kernel reservation and kdump"),
    # CONFIG_CRASH_CORE became CONFIG_VMCORE_INFO in 6.9 ("crash: split vmcoreinfo
    # exporting code out from crash_core.c"): accept either
    (
        "VMCORE_INFO/CRASH_CORE",
        ("CONFIG_VMCORE_INFO", "CONFIG_CRASH_CORE"),
        FAIL,
        "VMCOREINFO, which the dump tools read",
    ),
    ("PROC_VMCORE", ("CONFIG_PROC_VMCORE",), FAIL, "/proc/vmcore in the capture kernel"),
    ("SYSFS", ("CONFIG_SYSFS",), FAIL, "/sys/kernel/kexec_crash_*"),
    ("KALLSYMS", ("CONFIG_KALLSYMS",), WARN, "symbols for analysis without vmlinux"),
    ("DEBUG_INFO_BTF", ("CONFIG_DEBUG_INFO_BTF",), WARN, "types for analysis without vmlinux"),
    ("UNWINDER_ORC", ("CONFIG_UNWINDER_ORC",), WARN, "stack traces without vmlinux"),
)
#: arm64 has no ORC: its kernels always keep frame pointers, which the unwinder follows.
ARM64_UNWINDER_OPTION = (
    "FRAME_POINTER",
    ("CONFIG_FRAME_POINTER",),
    WARN,
    "stack traces without vmlinux (arm64 unwinds by frame records)",
)


def check_kernel_config(host: Host) -> list[Finding]:
    """The running kernel was built with what kdump and the analysis need."""
    found = host.kernel_config()
    if found is None:
        return [
            Finding(
                "kernel config",
                WARN,
                f"not found (/boot/config-{host.kernel_release()}, /proc/config.gz); "
                "kernel options not checked",
            )
        ]
    options, source = found
    findings = []
    wanted = KERNEL_OPTIONS
    if options.get("CONFIG_ARM64") == "y":
        wanted = tuple(ARM64_UNWINDER_OPTION if o[0] == "UNWINDER_ORC" else o for o in wanted)
    for item, names, missing_status, purpose in wanted:
        if any(options.get(name) == "y" for name in names):
            findings.append(Finding(f"CONFIG_{item}", OK, f"set ({source})"))
        else:
            findings.append(
                Finding(
                    f"CONFIG_{item}",
                    missing_status,
                    f"not set in {source}: needed for {purpose}",
                    "use a kernel built with it (distribution kernels are)",
                )
            )
    kaslr = options.get("CONFIG_RANDOMIZE_BASE") == "y"
    findings.append(
        Finding(
            "CONFIG_RANDOMIZE_BASE",
            OK,
            "KASLR on: the offset is saved in VMCOREINFO (KERNELOFFSET)" if kaslr else "KASLR off",
        )
    )
    return findings


def check_kexec_support(host: Host, options: dict[str, str]) -> Finding:
    """The running kernel has kexec at all: its sysfs files exist, its config says so."""
    fix = "boot a kernel built with CONFIG_KEXEC_FILE and CONFIG_CRASH_DUMP"
    no_syscalls = (
        bool(options)
        and options.get("CONFIG_KEXEC_FILE") != "y"
        and options.get("CONFIG_KEXEC") != "y"
    )
    because = []
    if no_syscalls:
        because.append("neither CONFIG_KEXEC nor CONFIG_KEXEC_FILE is set")
    if host.crash_size() is None:
        because.append("/sys/kernel/kexec_crash_size is missing")
    if not because and host.sysfs_int("/proc/sys/kernel/kexec_load_disabled") == 1:
        return Finding(
            "kexec support",
            FAIL,
            "kexec is disabled until reboot (/proc/sys/kernel/kexec_load_disabled = 1)",
            "find what sets the kernel.kexec_load_disabled sysctl, remove it, reboot",
        )
    if because:
        return Finding(
            "kexec support",
            FAIL,
            f"this kernel ({host.kernel_release()}) has no kexec support "
            f"({', '.join(because)}): no memory can be reserved and no capture "
            "kernel loaded",
            fix,
        )
    return Finding("kexec support", OK, "/sys/kernel/kexec_crash_* present")


def check_reservation(
    host: Host, estimate: Estimate, kernel: KernelImage | None, initrd_size: int
) -> list[Finding]:
    """crashkernel= is given, the kernel honoured it, and the reservation is big enough."""
    cmdline = host.cmdline()
    findings = []
    try:
        option = effective_crashkernel(cmdline)
    except CrashkernelError as exc:
        option = None
        findings.append(
            Finding(
                "crashkernel=",
                FAIL,
                str(exc),
                "kdumpkit setup --apply writes a valid one; then reboot",
            )
        )
    else:
        if option is None:
            findings.append(
                Finding(
                    "crashkernel=",
                    FAIL,
                    "not on the kernel command line",
                    f"kdumpkit setup --apply (crashkernel={estimate.value}), then reboot",
                )
            )
        else:
            wanted = option.size_for(estimate.system_ram)
            findings.append(
                Finding(
                    "crashkernel=",
                    OK if wanted else FAIL,
                    f"crashkernel={option}: {format_size(wanted) if wanted else 'nothing'} for "
                    f"{_mib(estimate.system_ram)} of RAM",
                    "" if wanted else f"use ranges that cover this machine: {estimate.value}",
                )
            )
    reserved = host.crash_size()
    if reserved is None:
        return findings
    needed = (kernel.memory_needed if kernel else 0) + initrd_size
    if reserved == 0:
        why = (
            "the kernel could not place it (dmesg | grep -i crashkernel)"
            if option
            else "no crashkernel= given"
        )
        findings.append(
            Finding(
                "reservation",
                FAIL,
                f"nothing reserved: {why}",
                "kdumpkit setup --apply, then reboot",
            )
        )
    elif needed > reserved:
        findings.append(
            Finding(
                "reservation",
                FAIL,
                f"{format_size(reserved)} reserved, too small for the kernel "
                f"({_mib(needed - initrd_size)} to boot) and initramfs ({_mib(initrd_size)}) alone",
                f"reserve crashkernel={estimate.value} (kdumpkit setup --apply), then reboot",
            )
        )
    elif reserved < estimate.size:
        findings.append(
            Finding(
                "reservation",
                WARN,
                f"{format_size(reserved)} reserved, estimate {format_size(estimate.size)}: the "
                "capture kernel may run out of memory",
                f"reserve crashkernel={estimate.value}",
            )
        )
    else:
        findings.append(
            Finding(
                "reservation",
                OK,
                f"{format_size(reserved)} reserved (estimate {format_size(estimate.size)})",
            )
        )
    return findings


def check_loaded(host: Host) -> Finding:
    """A capture kernel is loaded now."""
    loaded = host.crash_loaded()
    if loaded:
        record = recorded_load(host)
        detail = f" ({record.get('kernel')}, via {record.get('method')})" if record else ""
        return Finding("capture kernel", OK, "loaded" + detail)
    return Finding(
        "capture kernel",
        FAIL,
        "not loaded: a crash now would not be saved",
        "kdumpkit load (at boot: systemctl enable kdumpkit-load.service)",
    )


def check_lockdown(host: Host, kernel: KernelImage | None, options: dict[str, str]) -> Finding:
    """Under lockdown or Secure Boot the capture kernel must carry a signature."""
    mode = host.lockdown()
    secure_boot = host.secure_boot()
    forced = options.get("CONFIG_KEXEC_SIG_FORCE") == "y"
    reasons = [f"lockdown={mode}"] if mode not in (None, "none") else []
    if secure_boot:
        reasons.append("Secure Boot on")
    if forced:
        reasons.append("CONFIG_KEXEC_SIG_FORCE")
    if not reasons:
        state = f"lockdown={mode}" if mode else "lockdown unknown (no securityfs)"
        return Finding(
            "signatures",
            OK,
            f"{state}, Secure Boot "
            f"{'off' if secure_boot is False else 'unknown/off'}: any kernel loads",
        )
    why = ", ".join(reasons)
    if kernel is None:
        return Finding(
            "signatures",
            WARN,
            f"{why}: the capture kernel must be signed (no kernel found to inspect)",
        )
    if kernel.signed:
        return Finding(
            "signatures",
            OK,
            f"{why}: {kernel.path} is signed (its key must be in the kernel's trusted keyrings)",
        )
    return Finding(
        "signatures",
        FAIL,
        f"{why}: {kernel.path} is not signed, kexec_file_load will refuse it "
        "(and kexec_load is disabled under lockdown)",
        "use the distribution's signed kernel, or sign it (sbsign) with an enrolled key",
    )


def check_images(
    host: Host,
    config: Config,
    kernel_override: str | None = None,
    initrd_override: str | None = None,
) -> tuple[list[Finding], KernelImage | None, int]:
    """The capture kernel and initramfs exist and are loadable."""
    findings = []
    kernels = kernel_candidates(host, config, kernel_override)
    kernel_path = first_existing(host, kernels)
    kernel = None
    if kernel_path is None:
        findings.append(
            Finding(
                "kernel",
                FAIL,
                f"not found: {', '.join(kernels)}",
                "install the kernel image or set [kexec] kernel",
            )
        )
    else:
        try:
            kernel = inspect_kernel(str(host.path(kernel_path)), kernel_path)
        except OSError as exc:
            findings.append(Finding("kernel", FAIL, f"{kernel_path}: {exc.strerror}"))
        else:
            if kernel.file_loadable:
                findings.append(
                    Finding(
                        "kernel",
                        OK,
                        f"{kernel_path}: {kernel.kind}, needs {_mib(kernel.memory_needed)} to boot",
                    )
                )
            else:
                findings.append(
                    Finding(
                        "kernel",
                        WARN,
                        f"{kernel_path}: not a 64-bit bzImage or arm64 Image; "
                        "only kexec-tools' kexec -p can load it",
                    )
                )
    initrds = initrd_candidates(host, config, initrd_override)
    initrd_path = first_existing(host, initrds)
    initrd_size = 0
    if initrd_path is None:
        findings.append(
            Finding(
                "initramfs",
                FAIL,
                f"not found: {', '.join(initrds)}",
                "build it (update-initramfs -c -k $(uname -r)) or set [kexec] initrd",
            )
        )
    else:
        initrd_size = host.path(initrd_path).stat().st_size
        findings.append(Finding("initramfs", OK, f"{initrd_path}: {_mib(initrd_size)}"))
    return findings, kernel, initrd_size


def check_panic_on_oops(host: Host) -> Finding:
    """An oops panics (and so is dumped) rather than letting the machine limp on."""
    value = host.sysfs_int("/proc/sys/kernel/panic_on_oops")
    if value is None:
        return Finding("panic_on_oops", WARN, "/proc/sys/kernel/panic_on_oops not readable")
    if value:
        return Finding("panic_on_oops", OK, "an oops panics, so it is dumped")
    return Finding(
        "panic_on_oops",
        WARN,
        "0: an oops kills the task but saves no dump",
        "sysctl -w kernel.panic_on_oops=1 (persist in /etc/sysctl.d/)",
    )


#: other kdump services: Debian/Ubuntu kdump-tools, Fedora/RHEL kdump-utils
OTHER_SERVICES = ("kdump-tools.service", "kdump.service")


def check_other_services(host: Host) -> Finding | None:
    """Another kdump service enabled too would load its own capture kernel over ours."""
    wants = host.path("/etc/systemd/system/multi-user.target.wants")
    enabled = [
        name for name in OTHER_SERVICES if (wants / name).exists() or (wants / name).is_symlink()
    ]
    if not enabled:
        return None
    return Finding(
        "other kdump services",
        WARN,
        f"{', '.join(enabled)} enabled too: each loads its own capture kernel at "
        "boot and the last one wins",
        f"systemctl disable {' '.join(enabled)}",
    )


def check_dump_dir(host: Host, config: Config) -> Finding:
    """The dump directory is writable and has room."""
    if config.ssh:
        key = config.ssh_key
        if key and not host.path(key).is_file():
            return Finding(
                "dump target",
                FAIL,
                f"ssh key {key} not found",
                f"ssh-keygen -f {key} and copy it to {config.ssh.split(':')[0]}",
            )
        return Finding("dump target", OK, f"ssh {config.ssh} (reachability not checked here)")
    folder = host.path(config.dump_dir)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        read_only = existing.is_dir() and os.statvfs(existing).f_flag & os.ST_RDONLY
        return Finding(
            "dump directory",
            FAIL,
            f"{config.dump_dir} is not writable" + (" (read-only filesystem)" if read_only else ""),
            f"mkdir -p {config.dump_dir}, or set [dump] dir",
        )
    stat = os.statvfs(existing)
    free = stat.f_bavail * stat.f_frsize
    meminfo = host.meminfo()
    in_use = max(0, meminfo.get("MemTotal", 0) - meminfo.get("MemAvailable", 0))
    note = "" if existing == folder else " (will be created)"
    if free < config.min_free_mb * MiB:
        return Finding(
            "dump directory",
            FAIL,
            f"{config.dump_dir}: {_mib(free)} free, below min_free_mb {config.min_free_mb}",
            "free space or set [dump] dir elsewhere",
        )
    if free < in_use:
        return Finding(
            "dump directory",
            WARN,
            f"{config.dump_dir}{note}: {_mib(free)} free, less than the "
            f"{_mib(in_use)} of memory in use (a level-{config.dump_level} dump "
            "can approach it before compression)",
        )
    return Finding("dump directory", OK, f"{config.dump_dir}{note}: {_mib(free)} free")


def check_saved_dumps(host: Host, config: Config) -> Finding | None:
    """What earlier crashes left in the dump directory: the dumps saved, a file a capture
    never finished (power cut or killed while writing: its name still ends in
    ``.incomplete``), and captures that kept only the kernel log (no room for the dump, or
    stopped before it began).  None when the directory holds no crash."""
    if config.ssh:
        return None
    folder = host.path(config.dump_dir)
    try:
        stamps = sorted(p for p in folder.iterdir() if p.is_dir() and STAMP_RE.match(p.name))
    except OSError:
        return None
    if not stamps:
        return None
    cut: list[str] = []
    log_only: list[str] = []
    for stamp in stamps:
        names = [p.name for p in stamp.iterdir()]
        cut += [
            f"{config.dump_dir}/{stamp.name}/{n}" for n in names if n.endswith(INCOMPLETE_SUFFIX)
        ]
        if not any(n.startswith("dump.") and not n.endswith(INCOMPLETE_SUFFIX) for n in names):
            if not any(n.endswith(INCOMPLETE_SUFFIX) for n in names):
                log_only.append(f"{config.dump_dir}/{stamp.name}")
    if cut:
        return Finding(
            "saved dumps",
            WARN,
            f"{len(cut)} capture{'s' if len(cut) > 1 else ''} cut short (the machine stopped "
            f"while writing): {', '.join(cut)}",
            f"`kdumpkit info {cut[0]}` shows what it holds; delete it when done",
        )
    if log_only:
        return Finding(
            "saved dumps",
            WARN,
            f"{len(log_only)} crash{'es' if len(log_only) > 1 else ''} with the kernel log "
            f"only, no dump (no room, or the capture stopped before the dump): "
            f"{', '.join(log_only)}",
            f"see the dmesg file there; `kdumpkit check` says the room {config.dump_dir} has",
        )
    return Finding(
        "saved dumps",
        OK,
        f"{len(stamps)} crash{'es' if len(stamps) > 1 else ''} saved, the newest in "
        f"{config.dump_dir}/{stamps[-1].name}",
    )


def _for_next_load(finding: Finding) -> Finding:
    if finding.status != FAIL:
        return finding
    return Finding(
        finding.item,
        WARN,
        f"{finding.message} (a capture kernel is loaded now; "
        "this matters for the next kdumpkit load)",
        finding.fix,
    )


def run_checks(
    host: Host, config_path: str | None = None, kernel: str | None = None, initrd: str | None = None
) -> list[Finding]:
    """All checks, in the order a user would fix them.

    The capture kernel and initramfs checked are *kernel*/*initrd* when given, else
    the ones ``kdumpkit load`` recorded loading (when one is loaded), else the
    config's or the running kernel's.
    """
    config_finding, config = check_config(host, config_path)
    found = host.kernel_config()
    options = found[0] if found else {}
    kexec = check_kexec_support(host, options)
    findings = [config_finding, kexec]
    findings += check_kernel_config(host)
    record = recorded_load(host) if host.crash_loaded() else None
    if record and not (kernel or initrd):
        kernel, initrd = record.get("kernel"), record.get("initrd")
    image_findings, kernel_image, initrd_size = check_images(host, config, kernel, initrd)
    estimate = estimate_machine(host, config, kernel, initrd)
    findings += check_reservation(host, estimate, kernel_image, initrd_size)
    file_findings = [*image_findings, check_lockdown(host, kernel_image, options)]
    if host.crash_loaded():
        # a kernel is loaded already: these files only matter for the next load
        file_findings = [_for_next_load(finding) for finding in file_findings]
    findings += file_findings
    if kexec.status == OK:
        findings.append(check_loaded(host))
        findings.append(check_panic_on_oops(host))
    findings.append(check_dump_dir(host, config))
    saved = check_saved_dumps(host, config)
    if saved:
        findings.append(saved)
    other = check_other_services(host)
    if other:
        findings.append(other)
    return findings
