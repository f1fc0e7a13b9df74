"""Memory: the RAM the nodes hold, and what a task has resident."""

from __future__ import annotations

from typing import TYPE_CHECKING

import drgn

from kdumpkit.analyze.facts.cpus import for_each_cpu_in_dump

if TYPE_CHECKING:
    from drgn import Object, Program

# enum { MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES } (include/linux/mm_types_task.h),
# used when the enumerators are not in BTF.
MM_COUNTERS = {"MM_FILEPAGES": 0, "MM_ANONPAGES": 1, "MM_SWAPENTS": 2, "MM_SHMEMPAGES": 3}


def physical_pages(prog: Program) -> int:
    """The pages of RAM the nodes hold (their present pages): crash's MEMORY."""
    from drgn.helpers.linux.mmzone import for_each_online_pgdat

    return sum(pgdat.node_present_pages.value_() for pgdat in for_each_online_pgdat(prog))


def percent_mem_pages(prog: Program) -> int:
    """What crash's ``ps`` %MEM divides by: the RAM pages (:func:`physical_pages`), not
    totalram; on arm64 the pfn of ``high_memory`` instead (the end of the linear map's
    RAM: RAM there starts at 1 GiB on QEMU's virt machine, so it is twice the RAM)."""
    if prog.platform is not None and prog.platform.arch == drgn.Architecture.AARCH64:
        from drgn.helpers.linux.mm import virt_to_phys

        try:
            return virt_to_phys(prog["high_memory"]).value_() // prog["PAGE_SIZE"].value_()
        except (LookupError, drgn.FaultError, ValueError):
            pass
    return physical_pages(prog)


def memory_bytes(prog: Program) -> int:
    """RAM present in the machine: the nodes' present pages, as crash totals them."""
    return physical_pages(prog) * prog["PAGE_SIZE"].value_()


def _mm_counter_index(prog: Program, name: str) -> int:
    try:
        return int(prog.constant(name).value_())
    except LookupError:
        return MM_COUNTERS[name]


def percpu_counter_total(counter: Object) -> int:
    """A ``struct percpu_counter``'s count plus the deltas of every CPU in the dump."""
    from drgn.helpers.linux.percpu import per_cpu_ptr

    total: int = counter.count.value_()
    for cpu in for_each_cpu_in_dump(counter.prog_):
        total += per_cpu_ptr(counter.counters, cpu)[0].value_()
    return total


def task_rss_pages(task: Object) -> int:
    """Resident pages of the task's mm (file + anon + shmem), as /proc and crash count them."""
    mm = task.mm.read_()
    if not mm:
        return 0
    prog = task.prog_
    indexes = [
        _mm_counter_index(prog, n) for n in ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SHMEMPAGES")
    ]
    rss_stat = mm.rss_stat
    if rss_stat.type_.kind == drgn.TypeKind.ARRAY:
        # Linux kernel commit f1a7941243c1 ("mm: convert mm's rss stats into
        # percpu_counter") (v6.2) made rss_stat an array of percpu counters: the count
        # plus every CPU's pending delta, offline CPUs' included, as crash sums them.
        return max(sum(percpu_counter_total(rss_stat[i]) for i in indexes), 0)
    total: int = sum(rss_stat.count[i].counter.value_() for i in indexes)
    # Before v6.2 each thread caches deltas (SPLIT_RSS_COUNTING) that crash adds in.
    from drgn.helpers.linux.pid import for_each_task_in_group

    try:
        for thread in for_each_task_in_group(task, include_self=True):
            total += sum(thread.rss_stat.count[i].value_() for i in indexes)
    except AttributeError:
        pass
    return max(total, 0)


def slab_cache_name(prog: Program, address: int) -> str | None:
    """The name of the slab cache whose slab holds ``address`` (an object allocated
    or free), else None."""
    from drgn.helpers.linux.slab import slab_object_info

    try:
        info = slab_object_info(prog, address)
        if info is None:
            return None
        return str(info.slab_cache.name.string_().decode("latin-1", "replace"))
    except (LookupError, ValueError, drgn.FaultError, AttributeError):
        return None
