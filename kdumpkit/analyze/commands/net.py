"""``net``: the network devices as crash lists them; the other forms by drgn."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from kdumpkit.analyze.commands.base import Result, register
from kdumpkit.analyze.commands.drgn_crash import DrgnCrashCommand
from kdumpkit.analyze.crashformat import NET_HEADER, net_device_line
from kdumpkit.analyze.facts.net import net_devices, task_net_namespace
from kdumpkit.analyze.facts.tasks import context_task

if TYPE_CHECKING:
    from drgn import Program


@register
class Net(DrgnCrashCommand):
    """crash's ``net``."""

    name = "net"
    help = "network devices (other options by drgn)"

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        if args.argv:
            return super().run(prog, args)
        devices = net_devices(task_net_namespace(prog, context_task(prog)))
        lines = [NET_HEADER, *(net_device_line(device) for device in devices)]
        return Result("".join(f"{line}\n" for line in lines), [d.to_json() for d in devices])
