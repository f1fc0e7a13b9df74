"""``timer``: the timer wheel as crash lists it; ``-r`` (hrtimers) by drgn."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from kdumpkit.analyze.commands.base import Result, register
from kdumpkit.analyze.commands.drgn_crash import DrgnCrashCommand
from kdumpkit.analyze.crashformat import timers_text
from kdumpkit.analyze.facts.symbols import symbolize
from kdumpkit.analyze.facts.timers import jiffies, timer_bases

if TYPE_CHECKING:
    from drgn import Program


@register
class Timer(DrgnCrashCommand):
    """crash's ``timer``."""

    name = "timer"
    help = "timer queues (-r: hrtimers, by drgn)"

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        if args.argv:
            return super().run(prog, args)
        now = jiffies(prog)
        bases = timer_bases(prog)
        functions = {t.function for base in bases for t in base.timers}
        symbols = {f: symbolize(prog, f) or "" for f in functions}
        return Result(timers_text(now, bases, symbols), [b.to_json() for b in bases])
