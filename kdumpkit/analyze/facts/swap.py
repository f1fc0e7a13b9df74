"""Swap devices: ``swap_info[]``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drgn import Program

#: include/linux/swap.h
SWP_USED = 1
S_IFMT, S_IFBLK = 0o170000, 0o060000


@dataclass
class SwapDevice:
    """One swap device or file in use."""

    #: the address of its ``struct swap_info_struct``
    address: int
    #: a block device (crash's PARTITION), else a file
    partition: bool
    pages: int
    used_pages: int
    priority: int
    filename: str

    def to_json(self) -> dict[str, Any]:
        """The device as JSON-ready data."""
        return asdict(self)


def swap_devices(prog: Program) -> list[SwapDevice]:
    """The swap areas in use (``SWP_USED``), in ``swap_info[]`` order."""
    from drgn.helpers.linux.fs import d_path

    devices = []
    for index in range(prog["nr_swapfiles"].value_()):
        info = prog["swap_info"][index].read_()
        if not info or not info.flags.value_() & SWP_USED:
            continue
        swap_file = info.swap_file.read_()
        filename = "(unknown)"
        partition = False
        if swap_file:
            filename = d_path(swap_file.f_path).decode("utf-8", "replace")
            mode = swap_file.f_inode.i_mode.value_()
            partition = mode & S_IFMT == S_IFBLK
        devices.append(
            SwapDevice(
                address=info.value_(),
                partition=partition,
                pages=info.pages.value_(),
                used_pages=info.inuse_pages.value_(),
                priority=info.prio.value_(),
                filename=filename,
            )
        )
    return devices
