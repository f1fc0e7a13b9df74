"""A task's address space: its mm_struct and virtual memory areas."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from kdumpkit.analyze.facts.memory import task_rss_pages

if TYPE_CHECKING:
    from drgn import Object


@dataclass
class TaskMemory:
    """The task's mm_struct (0 for a kernel thread), page table root and sizes."""

    mm: int
    pgd: int
    rss_pages: int
    total_vm_pages: int

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return asdict(self)


@dataclass
class Vma:
    """One virtual memory area."""

    #: the address of its ``struct vm_area_struct``
    address: int
    start: int
    end: int
    flags: int
    #: the mapped file's path, or "" for anonymous memory
    file: str

    def to_json(self) -> dict[str, Any]:
        """The area as JSON-ready data."""
        return asdict(self)


def task_memory(task: Object) -> TaskMemory:
    """The task's mm_struct, pgd, resident and total pages (zeros for a kernel thread)."""
    mm = task.mm.read_()
    if not mm:
        return TaskMemory(mm=0, pgd=0, rss_pages=0, total_vm_pages=0)
    return TaskMemory(
        mm=mm.value_(),
        pgd=mm.pgd.value_(),
        rss_pages=task_rss_pages(task),
        total_vm_pages=mm.total_vm.value_(),
    )


def task_vmas(task: Object) -> list[Vma]:
    """The task's memory areas in address order (none for a kernel thread)."""
    from drgn.helpers.linux.fs import d_path
    from drgn.helpers.linux.mm import for_each_vma

    mm = task.mm.read_()
    if not mm:
        return []
    areas = []
    for vma in for_each_vma(mm):
        file = vma.vm_file.read_()
        areas.append(
            Vma(
                address=vma.value_(),
                start=vma.vm_start.value_(),
                end=vma.vm_end.value_(),
                flags=vma.vm_flags.value_(),
                file=d_path(file.f_path).decode("utf-8", "replace") if file else "",
            )
        )
    return areas
