"""Load and unload the capture kernel: kexec_file_load(2), falling back to ``kexec -p``.

kexec_file_load takes open file descriptors; the kernel parses the bzImage, verifies
its signature when required, builds purgatory and the ELF core header and appends
``elfcorehdr=`` itself.  glibc has no wrapper, so it is called through ``syscall(2)``.

The fallback, kexec-tools' ``kexec -p -c`` (the older kexec_load(2), with user space
building the segments), is used only when the syscall is missing (ENOSYS) or refuses
the image (ENOEXEC, or EPERM with no lockdown, e.g. a seccomp filter).  Under lockdown
kexec_load is forbidden outright, so falling back would only hide the real reason.

Nothing here needs more than /proc, /sys, the image files and libc, so ``kdumpkit
load`` runs in a minimal busybox system.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kdumpkit.service.crashkernel import format_size
from kdumpkit.service.errors import KexecError
from kdumpkit.service.host import Host

KEXEC_FILE_UNLOAD = 0x1
KEXEC_FILE_ON_CRASH = 0x2
KEXEC_FILE_NO_INITRAMFS = 0x4

#: kexec_file_load's number per architecture (arch/*/syscall tables; the generic
#: table's 294 serves arm64, riscv and loongarch)
SYSCALL_KEXEC_FILE_LOAD = {
    "x86_64": 320,
    "aarch64": 294,
    "riscv64": 294,
    "loongarch64": 294,
    "s390x": 381,
    "ppc64le": 382,
    "ppc64": 382,
}
#: signature verification failures (kimage_validate_signature and the keyring code)
SIGNATURE_ERRNOS = {
    errno.EKEYREJECTED,
    errno.ENOKEY,
    errno.EBADMSG,
    errno.ENODATA,
    errno.ENOPKG,
    errno.EKEYEXPIRED,
    errno.EKEYREVOKED,
}

Log = Callable[[str], None]
Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


@dataclass(frozen=True)
class LoadPlan:
    """What to load: paths as the machine names them, and the capture command line."""

    kernel: str
    initrd: str | None
    cmdline: str


def _syscall_number() -> int | None:
    return SYSCALL_KEXEC_FILE_LOAD.get(platform.machine())


def kexec_file_load(kernel_fd: int, initrd_fd: int, cmdline: str | None, flags: int) -> None:
    """Call kexec_file_load(2); raise KexecError carrying the errno when it fails."""
    number = _syscall_number()
    if number is None:
        raise KexecError(
            f"kexec_file_load: no syscall number known for {platform.machine()}", errno.ENOSYS
        )
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    raw = cmdline.encode() + b"\0" if cmdline is not None else None
    result = libc.syscall(
        ctypes.c_long(number),
        ctypes.c_int(kernel_fd),
        ctypes.c_int(initrd_fd),
        ctypes.c_ulong(len(raw) if raw else 0),
        ctypes.c_char_p(raw),
        ctypes.c_ulong(flags),
    )
    if result != 0:
        code = ctypes.get_errno()
        raise KexecError(os.strerror(code), code)


def explain(code: int, host: Host, plan: LoadPlan | None = None) -> str:
    """A message that says why kexec_file_load failed with *code* and what to do."""
    lockdown = host.lockdown()
    reserved = host.crash_size()
    if code == errno.ENOSYS:
        return "this kernel has no kexec_file_load (CONFIG_KEXEC_FILE is off)"
    if code in SIGNATURE_ERRNOS or (code == errno.EPERM and lockdown not in (None, "none")):
        kernel = plan.kernel if plan else "the kernel"
        return (
            f"the kernel refused {kernel}: signed kexec images are required "
            f"(lockdown={lockdown or 'unknown'}, Secure Boot or CONFIG_KEXEC_SIG_FORCE) "
            f"and its signature is missing or not trusted ({os.strerror(code)}); use the "
            "distribution's signed kernel or enroll its key (mokutil)"
        )
    if code == errno.EPERM:
        disabled = host.sysfs_int("/proc/sys/kernel/kexec_load_disabled")
        if disabled == 1:
            return "kexec is disabled until reboot (/proc/sys/kernel/kexec_load_disabled = 1)"
        if os.geteuid() != 0:
            return "loading a kernel needs root (CAP_SYS_BOOT)"
        return (
            "the kernel refused the load (EPERM): no CAP_SYS_BOOT here (a container?) "
            "or a seccomp filter blocks kexec"
        )
    if code in (errno.ENOMEM, errno.EADDRNOTAVAIL):
        if not reserved:
            return (
                "no memory is reserved for the capture kernel: add crashkernel= to "
                "the kernel command line (kdumpkit setup --apply) and reboot"
            )
        return (
            f"the capture kernel and initramfs do not fit in the {format_size(reserved)} "
            "reserved by crashkernel=; reserve more (kdumpkit estimate) and reboot, or "
            "use a smaller initramfs"
        )
    if code == errno.EBUSY:
        return "another kexec load or unload is in progress; try again"
    if code == errno.ENOEXEC:
        return "the kernel file is not an image kexec_file_load can load (a 64-bit bzImage)"
    if code == errno.EINVAL:
        return (
            "the kernel rejected the arguments (command line longer than the kernel "
            "allows, or a bad image)"
        )
    if code == errno.EFBIG:
        return "the kernel or initramfs file is too large"
    if code == errno.ENOENT:
        return "a file is missing"
    return os.strerror(code)


def _open(host: Host, path: str) -> int:
    try:
        return os.open(host.path(path), os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise KexecError(f"cannot open {path}: {exc.strerror}", exc.errno or 0) from None


def _fallback_allowed(code: int, host: Host) -> bool:
    if code == errno.ENOSYS or code == errno.ENOEXEC:
        return True
    return (
        code == errno.EPERM
        and host.lockdown() in (None, "none")
        and host.sysfs_int("/proc/sys/kernel/kexec_load_disabled") != 1
    )


def _run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, check=False)


def kexec_tools_command(plan: LoadPlan, kexec: str = "kexec") -> list[str]:
    """The ``kexec -p -c`` (kexec_load) command equivalent to *plan*."""
    command = [kexec, "-p", "-c", f"--command-line={plan.cmdline}"]
    if plan.initrd:
        command.append(f"--initrd={plan.initrd}")
    return [*command, plan.kernel]


def load(
    plan: LoadPlan, host: Host, method: str = "auto", log: Log = print, runner: Runner = _run
) -> str:
    """Load *plan* as the capture kernel; return the method used ("file" or "kexec-tools").

    *method* is "auto" (syscall, then the fallback where allowed), "file" or "load".
    """
    if method in ("auto", "file"):
        kernel_fd = _open(host, plan.kernel)
        initrd_fd = _open(host, plan.initrd) if plan.initrd else -1
        flags = KEXEC_FILE_ON_CRASH | (0 if plan.initrd else KEXEC_FILE_NO_INITRAMFS)
        log(
            f"kexec_file_load(kernel={plan.kernel}, initrd={plan.initrd or '-'}, "
            f"flags=ON_CRASH{'|NO_INITRAMFS' if not plan.initrd else ''})"
        )
        try:
            kexec_file_load(kernel_fd, initrd_fd, plan.cmdline, flags)
            return "file"
        except KexecError as exc:
            if method == "file" or not _fallback_allowed(exc.errno, host):
                raise KexecError(
                    f"kexec_file_load failed: {explain(exc.errno, host, plan)}", exc.errno
                ) from None
            log(
                f"kexec_file_load failed ({errno.errorcode.get(exc.errno, exc.errno)}: "
                f"{explain(exc.errno, host, plan)}); falling back to kexec -p (kexec_load)"
            )
        finally:
            os.close(kernel_fd)
            if initrd_fd >= 0:
                os.close(initrd_fd)
    kexec = shutil.which("kexec")
    if kexec is None:
        raise KexecError(
            "kexec_load fallback needs kexec-tools' kexec, which is not on PATH", errno.ENOSYS
        )
    shown_plan = LoadPlan(
        str(host.path(plan.kernel)),
        str(host.path(plan.initrd)) if plan.initrd else None,
        plan.cmdline,
    )
    command = kexec_tools_command(shown_plan, kexec)
    log("running: " + shlex.join(command))
    result = runner(command)
    if result.returncode != 0:
        raise KexecError(
            f"{kexec} -p failed (exit {result.returncode})"
            + _one_line(result.stderr or result.stdout)
        )
    return "kexec-tools"


def _one_line(output: str | None, limit: int = 300) -> str:
    """A command's output as one line for an error message."""
    text = " ".join((output or "").split())
    return f": {text[:limit]}" if text else ""


def unload(host: Host, log: Log = print, runner: Runner = _run) -> str:
    """Unload the capture kernel; return the method used."""
    log("kexec_file_load(flags=UNLOAD|ON_CRASH)")
    try:
        kexec_file_load(-1, -1, None, KEXEC_FILE_UNLOAD | KEXEC_FILE_ON_CRASH)
        return "file"
    except KexecError as exc:
        if exc.errno != errno.ENOSYS:
            raise KexecError(f"unload failed: {explain(exc.errno, host)}", exc.errno) from None
    kexec = shutil.which("kexec")
    if kexec is None:
        raise KexecError(
            "this kernel has no kexec_file_load and kexec-tools' kexec is not installed",
            errno.ENOSYS,
        )
    log(f"running: {kexec} -p -u")
    result = runner([kexec, "-p", "-u"])
    if result.returncode != 0:
        raise KexecError(
            f"{kexec} -p -u failed (exit {result.returncode})"
            + _one_line(result.stderr or result.stdout)
        )
    return "kexec-tools"
