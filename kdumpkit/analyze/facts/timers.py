"""Timers: each CPU's timer wheel bases and the timers queued on them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from kdumpkit.analyze.facts.cpus import for_each_cpu_in_dump
from kdumpkit.analyze.facts.symbols import read_global_int

if TYPE_CHECKING:
    from drgn import Program

#: include/linux/timer.h's bases as crash names them
BASE_NAMES = ("BASE_STD", "BASE_DEF")


@dataclass
class Timer:
    """One queued ``struct timer_list``."""

    address: int
    expires: int
    function: int

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return asdict(self)


@dataclass
class TimerBase:
    """One CPU's ``struct timer_base`` and its timers in wheel order."""

    cpu: int
    #: BASE_STD or BASE_DEF
    name: str
    address: int
    timers: list[Timer] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return {
            "cpu": self.cpu,
            "name": self.name,
            "address": self.address,
            "timers": [t.to_json() for t in self.timers],
        }


def jiffies(prog: Program) -> int:
    """The ``jiffies`` counter (unsigned long)."""
    return read_global_int(prog, "jiffies", 8)


def timer_bases(prog: Program) -> list[TimerBase]:
    """Every CPU's timer bases: BASE_STD, and BASE_DEF where timer migration exists
    (CONFIG_NO_HZ_COMMON), each with its timers vector by vector."""
    import drgn
    from drgn.helpers.linux.list import hlist_for_each_entry
    from drgn.helpers.linux.percpu import per_cpu

    from kdumpkit.analyze.stack import kernel_symbol

    count = 2 if kernel_symbol(prog, "sysctl_timer_migration") is not None else 1
    found = []
    for cpu in for_each_cpu_in_dump(prog):
        bases = per_cpu(prog["timer_bases"], cpu)
        for index in range(count):
            base = bases[index]
            timers = []
            for vector in base.vectors:
                try:
                    for timer in hlist_for_each_entry(
                        "struct timer_list", vector.address_of_(), "entry"
                    ):
                        timers.append(
                            Timer(
                                timer.value_(),
                                timer.expires.value_(),
                                timer.function.value_(),
                            )
                        )
                except drgn.FaultError:
                    continue  # crash ignores a chain it cannot read
            found.append(TimerBase(cpu, BASE_NAMES[index], base.address_of_().value_(), timers))
    return found
