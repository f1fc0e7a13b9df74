"""Filesystems: the mounts of a mount namespace."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drgn import Object, Program


@dataclass
class MountInfo:
    """One mount, as ``mount`` lists it."""

    #: the address of its ``struct mount``
    mount: int
    super_block: int
    fstype: str
    devname: str
    dirname: str

    def to_json(self) -> dict[str, Any]:
        """The mount as JSON-ready data."""
        return asdict(self)


def task_mount_namespace(prog: Program, task: Object | None) -> Object:
    """The mount namespace ``task`` lives in (init's when there is no task, or it has
    none: an exiting task)."""
    if task is not None:
        nsproxy = task.nsproxy.read_()
        if nsproxy:
            return nsproxy.mnt_ns.read_()
    return prog["init_task"].nsproxy.mnt_ns.read_()


def mounts(prog: Program, namespace: Object) -> list[MountInfo]:
    """The namespace's mounts in the kernel's order (as /proc/mounts lists them)."""
    from drgn.helpers.linux.fs import for_each_mount, mount_dst, mount_fstype, mount_src

    def text(data: bytes) -> str:
        return data.decode("utf-8", "replace")

    return [
        MountInfo(
            mount=mnt.value_(),
            super_block=mnt.mnt.mnt_sb.value_(),
            fstype=text(mount_fstype(mnt)),
            devname=text(mount_src(mnt)),
            dirname=text(mount_dst(mnt)),
        )
        for mnt in for_each_mount(namespace)
    ]
