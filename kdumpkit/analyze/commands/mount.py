"""``mount``: the mounts of the current task's mount namespace, as crash lists them."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from kdumpkit.analyze.commands.base import Command, Result, register
from kdumpkit.analyze.crashformat import MOUNT_HEADER, mount_row
from kdumpkit.analyze.facts.fs import mounts, task_mount_namespace
from kdumpkit.analyze.facts.tasks import context_task

if TYPE_CHECKING:
    from drgn import Program


@register
class Mount(Command):
    """crash's ``mount`` (no options)."""

    name = "mount"
    help = "mounted filesystems"

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        found = mounts(prog, task_mount_namespace(prog, context_task(prog)))
        text = MOUNT_HEADER + "\n" + "".join(mount_row(m) + "\n" for m in found)
        return Result(text, [m.to_json() for m in found])
