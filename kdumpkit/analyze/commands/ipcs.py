"""``ipcs``: System V IPC objects as crash lists them; the options by drgn."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from kdumpkit.analyze.commands.base import Result, register
from kdumpkit.analyze.commands.drgn_crash import DrgnCrashCommand
from kdumpkit.analyze.crashformat import ipcs_text
from kdumpkit.analyze.facts.ipc import (
    IPC_MSG_IDS,
    IPC_SEM_IDS,
    IPC_SHM_IDS,
    ipc_objects,
    task_ipc_namespace,
)
from kdumpkit.analyze.facts.tasks import context_task

if TYPE_CHECKING:
    from drgn import Program


@register
class Ipcs(DrgnCrashCommand):
    """crash's ``ipcs``."""

    name = "ipcs"
    help = "System V IPC facilities"

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        if args.argv:
            return super().run(prog, args)
        namespace = task_ipc_namespace(prog, context_task(prog))
        shm, sem, msg = (ipc_objects(namespace, k) for k in (IPC_SHM_IDS, IPC_SEM_IDS, IPC_MSG_IDS))
        rows = [
            {"kind": kind, **o.to_json()}
            for kind, objs in (("shm", shm), ("sem", sem), ("msg", msg))
            for o in objs
        ]
        return Result(ipcs_text(shm, sem, msg), rows)
