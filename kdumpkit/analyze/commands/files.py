"""``files``: a task's open files (drgn's crash-compatible implementation)."""

from __future__ import annotations

from kdumpkit.analyze.commands.base import register
from kdumpkit.analyze.commands.drgn_crash import DrgnCrashCommand


@register
class Files(DrgnCrashCommand):
    """crash's ``files``."""

    name = "files"
    help = "open files"
