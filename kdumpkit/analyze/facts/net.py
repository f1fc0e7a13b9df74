"""Networking: the network devices of a network namespace and their addresses."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drgn import Object, Program


@dataclass
class NetDevice:
    """One network device."""

    #: the address of its ``struct net_device``
    address: int
    name: str
    #: IPv4 addresses, then IPv6, in the kernel's list order
    addresses: list[str]

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return asdict(self)


def task_net_namespace(prog: Program, task: Object | None) -> Object:
    """The network namespace ``task`` lives in (init_net without a task or nsproxy)."""
    if task is not None:
        nsproxy = task.nsproxy.read_()
        if nsproxy:
            return nsproxy.net_ns.read_()
    return prog["init_net"].address_of_()


def net_devices(namespace: Object) -> list[NetDevice]:
    """The namespace's devices in list order, with their IPv4 and IPv6 addresses."""
    from drgn.helpers.linux.net import (
        for_each_netdev,
        netdev_ipv4_addrs,
        netdev_ipv6_addrs,
        netdev_name,
    )

    devices = []
    for dev in for_each_netdev(namespace):
        addresses = [str(a) for a in netdev_ipv4_addrs(dev)]
        addresses += [str(a) for a in netdev_ipv6_addrs(dev)]
        name = netdev_name(dev).decode("utf-8", "replace")
        devices.append(NetDevice(dev.value_(), name, addresses))
    return devices
