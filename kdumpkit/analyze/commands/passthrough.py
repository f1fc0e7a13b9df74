"""drgn 0.3.0's crash commands that no module of ours implements, offered as they are
(run by :class:`~kdumpkit.analyze.commands.drgn_crash.DrgnCrashCommand`)."""

from __future__ import annotations

from kdumpkit.analyze.commands.base import COMMANDS, register
from kdumpkit.analyze.commands.drgn_crash import DrgnCrashCommand

#: name -> description of each command passed through to drgn
PASS_THROUGH = {
    "ascii": "translate a hexadecimal value to ASCII",
    "bpf": "eBPF programs and maps",
    "btop": "bytes to page number",
    "dev": "device data",
    "eval": "evaluate an expression",
    "ptob": "page number to bytes",
    "search": "search memory for a value",
    "tree": "walk a tree (rbtree, radix, xarray, maple)",
    "vtop": "virtual address to physical address",
    "waitq": "wait queue entries",
}


def _register_pass_through() -> None:
    for name, description in PASS_THROUGH.items():
        if name in COMMANDS:
            continue  # a module of ours implements it (imported first)
        register(
            type(
                f"Drgn_{name}",
                (DrgnCrashCommand,),
                {"name": name, "help": description, "__doc__": description},
            )
        )


_register_pass_through()
