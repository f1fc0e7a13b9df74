"""Loaded kernel modules."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import drgn

from kdumpkit.analyze.context import cached

if TYPE_CHECKING:
    from drgn import Object, Program


@dataclass
class ModuleInfo:
    """One loaded module."""

    #: the address of its ``struct module``
    module: int
    name: str
    #: its core (text) base and the size of its core regions
    base: int
    size: int
    #: the taint letters it brought (``OE``), or ""
    taints: str

    def to_json(self) -> dict[str, Any]:
        """The module as JSON-ready data."""
        return asdict(self)


def has_module_memory(prog: Program) -> bool:
    """Whether modules are laid out as ``mem[]`` regions (v6.4+), whose text base crash
    labels TEXT_BASE."""
    try:
        return bool(prog.type("struct module").has_member("mem"))
    except LookupError:
        return False


def module_base_size(module: Object) -> tuple[int, int]:
    """The module's core base address and size."""
    try:
        layout = module.core_layout
    except AttributeError:
        # Linux kernel commit ac3b43283923 ("module: replace module_layout with
        # module_memory") (v6.4): the text region's base, all core regions' sizes.
        prog = module.prog_
        text = module.mem[prog.constant("MOD_TEXT").value_()]
        size = sum(
            module.mem[prog.constant(name).value_()].size.value_()
            for name in ("MOD_TEXT", "MOD_DATA", "MOD_RODATA", "MOD_RO_AFTER_INIT")
        )
        return text.base.value_(), size
    return layout.base.value_(), layout.size.value_()


def loaded_modules(prog: Program) -> list[ModuleInfo]:
    """Every loaded module, in the order of their ``struct module`` addresses (crash's)."""
    from drgn.helpers.linux.module import for_each_module, module_taints

    modules = []
    for module in for_each_module(prog):
        base, size = module_base_size(module)
        try:
            taints = module_taints(module)
        except LookupError:
            taints = ""
        modules.append(
            ModuleInfo(
                module=module.value_(),
                name=module.name.string_().decode("utf-8", "replace"),
                base=base,
                size=size,
                taints=taints,
            )
        )
    modules.sort(key=lambda info: info.module)
    return modules


def module_ranges(prog: Program) -> list[tuple[int, int, str]]:
    """(start, end, name) of every loaded module's core region, sorted (cached)."""

    def compute() -> list[tuple[int, int, str]]:
        try:
            return sorted((m.base, m.base + m.size, m.name) for m in loaded_modules(prog))
        except (LookupError, drgn.FaultError, ValueError):
            return []

    return cached(prog, "module_ranges", compute)
