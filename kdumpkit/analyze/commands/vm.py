"""``vm``: a task's virtual memory areas (drgn's crash-compatible implementation)."""

from __future__ import annotations

from kdumpkit.analyze.commands.base import register
from kdumpkit.analyze.commands.drgn_crash import DrgnCrashCommand


@register
class Vm(DrgnCrashCommand):
    """crash's ``vm``."""

    name = "vm"
    help = "virtual memory"
