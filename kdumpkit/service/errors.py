"""Errors raised by the service side (check, estimate, setup, load)."""

from __future__ import annotations

from kdumpkit.errors import KdumpkitError


class ServiceError(KdumpkitError):
    """A service operation cannot be done; the message says why and what to do."""


class CrashkernelError(ServiceError):
    """A crashkernel= value that the kernel would reject."""


class KexecError(ServiceError):
    """Loading or unloading the capture kernel failed.

    ``errno`` is the syscall's error number (0 when the failure was not a syscall's).
    """

    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno
