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


#: include/uapi/linux/stat.h
S_IFMT = 0o170000
_FILE_TYPES = {
    0o100000: "REG",
    0o120000: "LNK",
    0o040000: "DIR",
    0o020000: "CHR",
    0o060000: "BLK",
    0o010000: "FIFO",
    0o140000: "SOCK",
}


@dataclass
class OpenFile:
    """One open file descriptor of a task."""

    fd: int
    file: int
    dentry: int
    inode: int
    #: REG, DIR, CHR, BLK, FIFO, PIPE, LNK, SOCK or UNKN, as crash names them
    type: str
    #: the full path ("" for a pipe or a socket)
    path: str

    def to_json(self) -> dict[str, Any]:
        """The file as JSON-ready data."""
        return asdict(self)


def _path_text(path: Object) -> str:
    from drgn.helpers.linux.fs import d_path

    return d_path(path).decode("utf-8", "replace")


def task_root_and_cwd(task: Object) -> tuple[str, str] | None:
    """The task's root and working directories, or None when it has no fs_struct."""
    fs = task.fs.read_()
    if not fs:
        return None
    return _path_text(fs.root.address_of_()), _path_text(fs.pwd.address_of_())


def file_type(prog: Program, inode: Object) -> str:
    """crash's name of the inode's type; a FIFO is a PIPE when its operations are the
    pipe's (pipe_inode_operations before Linux 2.6.11, rdwr_pipe_fops until 2.6.32)."""
    from kdumpkit.analyze.stack import kernel_symbol

    mode = inode.i_mode.value_()
    kind = _FILE_TYPES.get(mode & S_IFMT, "UNKN")
    if kind == "FIFO":
        for member, name in (("i_op", "pipe_inode_operations"), ("i_fop", "rdwr_pipe_fops")):
            symbol = kernel_symbol(prog, name)
            if symbol is not None:
                if getattr(inode, member).value_() == symbol.address:
                    return "PIPE"
                break
    return kind


def task_open_files(task: Object) -> list[OpenFile] | None:
    """The task's open files by descriptor, or None when it has no file table."""
    files = task.files.read_()
    if not files:
        return None
    fdt = files.fdt.read_()
    max_fds = fdt.max_fds.value_()
    if not fdt or not max_fds:
        return None
    prog = task.prog_
    open_fds = fdt.open_fds.read_()
    words = prog.read(open_fds.value_(), -(-max_fds // 64) * 8)
    found = []
    for fd in range(max_fds):
        if not words[fd // 8] >> (fd % 8) & 1:
            continue
        file = fdt.fd[fd].read_()
        if not file:
            continue
        dentry = file.f_path.dentry.read_()
        inode = dentry.d_inode.read_() if dentry else dentry
        if not dentry or not inode:
            kind, path = "?", "?"
        else:
            kind = file_type(prog, inode)
            path = _path_text(file.f_path.address_of_())
            if kind == "PIPE" or (kind == "SOCK" and path == "/"):
                path = ""
        found.append(
            OpenFile(
                fd=fd,
                file=file.value_(),
                dentry=dentry.value_(),
                inode=inode.value_() if dentry else 0,
                type=kind,
                path=path,
            )
        )
    return found


@dataclass
class TaskFiles:
    """What ``files`` shows of a task: its directories and open files."""

    #: None when the task has no fs_struct (an exiting task)
    root: str | None
    cwd: str | None
    #: None when it has no file table
    files: list[OpenFile] | None

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return {
            "root": self.root,
            "cwd": self.cwd,
            "files": [f.to_json() for f in self.files] if self.files is not None else None,
        }


def task_files(task: Object) -> TaskFiles:
    """The task's root and working directories and its open files."""
    dirs = task_root_and_cwd(task)
    root, cwd = dirs if dirs is not None else (None, None)
    return TaskFiles(root=root, cwd=cwd, files=task_open_files(task))
