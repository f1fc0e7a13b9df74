"""System V IPC: the shared memory segments, semaphore arrays and message queues of an
IPC namespace."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drgn import Object, Program

#: ipc_namespace.ids[]: include/linux/ipc_namespace.h IPC_SEM_IDS, IPC_MSG_IDS, IPC_SHM_IDS
IPC_SEM_IDS, IPC_MSG_IDS, IPC_SHM_IDS = 0, 1, 2
#: include/uapi/linux/shm.h mode flags
SHM_DEST, SHM_LOCKED = 0o1000, 0o2000


@dataclass
class IpcObject:
    """One shared memory segment, semaphore array or message queue."""

    #: the address of its shmid_kernel, sem_array or msg_queue
    address: int
    key: int
    id: int
    uid: int
    mode: int
    #: shm: bytes and attaches; sem: semaphores; msg: bytes queued and messages
    size: int
    count: int

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return asdict(self)


def task_ipc_namespace(prog: Program, task: Object | None) -> Object:
    """The IPC namespace ``task`` lives in (init's without a task or nsproxy)."""
    if task is not None:
        nsproxy = task.nsproxy.read_()
        if nsproxy:
            return nsproxy.ipc_ns.read_()
    return prog["init_ipc_ns"].address_of_()


def ipc_objects(namespace: Object, kind: int) -> list[IpcObject]:
    """The live objects of one kind (IPC_SHM_IDS...) in ID order."""
    import drgn
    from drgn.helpers.linux.idr import idr_for_each

    structs = {
        IPC_SHM_IDS: ("struct shmid_kernel", "shm_perm"),
        IPC_SEM_IDS: ("struct sem_array", "sem_perm"),
        IPC_MSG_IDS: ("struct msg_queue", "q_perm"),
    }
    type_name, member = structs[kind]
    found = []
    for _, pointer in idr_for_each(namespace.ids[kind].ipcs_idr.address_of_()):
        perm = drgn.cast("struct kern_ipc_perm *", pointer)
        if perm.deleted:
            continue
        obj = drgn.container_of(perm, type_name, member)
        if kind == IPC_SHM_IDS:
            size, count = obj.shm_segsz.value_(), obj.shm_nattch.value_()
        elif kind == IPC_SEM_IDS:
            size, count = obj.sem_nsems.value_(), 0
        else:
            size, count = obj.q_cbytes.value_(), obj.q_qnum.value_()
        found.append(
            IpcObject(
                address=obj.value_(),
                key=perm.key.value_() & 0xFFFFFFFF,
                id=perm.id.value_(),
                uid=perm.uid.val.value_(),
                mode=perm.mode.value_(),
                size=size,
                count=count,
            )
        )
    return found
