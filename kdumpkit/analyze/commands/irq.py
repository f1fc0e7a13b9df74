"""``irq``: ``-a`` (affinity) and ``-b`` (softirq vectors) as crash prints them; the
other forms by drgn."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from kdumpkit.analyze.commands.base import Result, register
from kdumpkit.analyze.commands.drgn_crash import DrgnCrashCommand
from kdumpkit.analyze.crashformat import (
    IRQ_AFFINITY_HEADER,
    SOFTIRQ_HEADER,
    irq_affinity_line,
    irq_counts_header,
    irq_counts_line,
    softirq_line,
)
from kdumpkit.analyze.facts.cpus import for_each_cpu_in_dump
from kdumpkit.analyze.facts.irq import irq_affinities, irq_counts, softirq_actions

if TYPE_CHECKING:
    from drgn import Program


@register
class Irq(DrgnCrashCommand):
    """crash's ``irq``."""

    name = "irq"
    help = "IRQ data (-a affinity, -b softirq vectors, -s interrupts per CPU)"

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        if args.argv == ["-a"]:
            found = irq_affinities(prog)
            lines = [IRQ_AFFINITY_HEADER, *(irq_affinity_line(irq) for irq in found)]
            return Result("".join(f"{line}\n" for line in lines), [i.to_json() for i in found])
        if args.argv == ["-b"]:
            actions = softirq_actions(prog)
            lines = [SOFTIRQ_HEADER, *(softirq_line(action) for action in actions)]
            return Result("".join(f"{line}\n" for line in lines), [a.to_json() for a in actions])
        if args.argv == ["-s"]:
            counts = irq_counts(prog)
            lines = [
                irq_counts_header(for_each_cpu_in_dump(prog)),
                *(irq_counts_line(irq) for irq in counts),
            ]
            return Result("".join(f"{line}\n" for line in lines), [i.to_json() for i in counts])
        return super().run(prog, args)
