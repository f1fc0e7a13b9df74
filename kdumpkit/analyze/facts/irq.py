"""Interrupts: the IRQs with handlers and their CPU affinity, and the softirq vectors."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from kdumpkit.analyze.facts.cpus import for_each_cpu_in_dump
from kdumpkit.analyze.facts.symbols import symbol_module

if TYPE_CHECKING:
    from drgn import Program


@dataclass
class IrqAffinity:
    """An IRQ that has handlers: their names and the CPUs it may run on."""

    irq: int
    #: the irqaction names, in chain order
    names: list[str]
    cpus: list[int]

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return asdict(self)


@dataclass
class SoftirqAction:
    """One softirq vector's handler."""

    vector: int
    address: int
    function: str | None
    module: str | None

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return asdict(self)


def irq_affinities(prog: Program) -> list[IrqAffinity]:
    """Every IRQ with an action, in IRQ order, with the CPUs of its affinity mask that
    are in the dump."""
    from drgn.helpers.linux.cpumask import for_each_cpu
    from drgn.helpers.linux.irq import (
        irq_desc_action_names,
        irq_desc_affinity_mask,
        irq_get_nr_irqs,
        irq_to_desc,
    )

    cpus = len(for_each_cpu_in_dump(prog))
    found = []
    for irq in range(irq_get_nr_irqs(prog)):
        desc = irq_to_desc(prog, irq)
        if not desc or not desc.action:
            continue
        names = [name.decode("utf-8", "replace") for name in irq_desc_action_names(desc)]
        mask = irq_desc_affinity_mask(desc)
        found.append(IrqAffinity(irq, names, [c for c in for_each_cpu(mask) if c < cpus]))
    return found


def softirq_actions(prog: Program) -> list[SoftirqAction]:
    """The handlers of ``softirq_vec[NR_SOFTIRQS]`` that are set."""
    base = prog.symbol("softirq_vec").address
    count = prog.constant("NR_SOFTIRQS").value_()
    actions = []
    for vector in range(count):
        address = prog.read_u64(base + 8 * vector)
        if not address:
            continue
        try:
            function: str | None = prog.symbol(address).name
        except LookupError:
            function = None
        actions.append(SoftirqAction(vector, address, function, symbol_module(prog, address)))
    return actions


@dataclass
class IrqCounts:
    """An IRQ's interrupt count on each CPU, its chip and flow handler (``irq -s``,
    /proc/interrupts)."""

    irq: int
    #: per CPU in the dump, in CPU order
    counts: list[int]
    #: irq_chip.name ("IO-APIC"), or None
    chip: str | None
    #: irq_desc.name, the flow handler's ("edge", "fasteoi"), or None
    flow: str | None
    names: list[str]

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return asdict(self)


def irq_counts(prog: Program) -> list[IrqCounts]:
    """Every IRQ with an action, with its per-CPU counts."""
    from drgn.helpers.linux.irq import (
        irq_desc_action_names,
        irq_desc_kstat_cpu,
        irq_get_nr_irqs,
        irq_to_desc,
    )

    def text(pointer: Any) -> str | None:
        return pointer.string_().decode("utf-8", "replace") if pointer else None

    cpus = for_each_cpu_in_dump(prog)
    found = []
    for irq in range(irq_get_nr_irqs(prog)):
        desc = irq_to_desc(prog, irq)
        if not desc or not desc.action:
            continue
        chip = desc.irq_data.chip.read_()
        found.append(
            IrqCounts(
                irq=irq,
                counts=[int(irq_desc_kstat_cpu(desc, cpu)) for cpu in cpus],
                chip=text(chip.name.read_()) if chip else None,
                flow=text(desc.name.read_()),
                names=[name.decode("utf-8", "replace") for name in irq_desc_action_names(desc)],
            )
        )
    return found
