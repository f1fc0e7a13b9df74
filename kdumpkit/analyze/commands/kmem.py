"""``kmem``: ``-i``, the memory summary crash prints (like /proc/meminfo), is ours;
the other options go to drgn's crash layer."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from kdumpkit.analyze.commands.base import Result, register
from kdumpkit.analyze.commands.drgn_crash import DrgnCrashCommand
from kdumpkit.analyze.crashformat import size_text

if TYPE_CHECKING:
    from drgn import Program


def _stat(prog: Program, array: str, item: str) -> int:
    return max(prog[array][prog.constant(item).value_()].counter.value_(), 0)


def _optional_global(prog: Program, name: str, default: int = 0) -> int:
    try:
        obj = prog[name]
    except LookupError:
        return default
    try:
        return obj.counter.value_()
    except (AttributeError, LookupError):
        return obj.value_()


def nr_blockdev_pages(prog: Program) -> int:
    """Pages cached for block devices (the BUFFERS line), as fs/block_dev.c counts them."""
    from drgn.helpers.linux.list import list_for_each_entry

    try:
        superblock = prog["blockdev_superblock"]
    except LookupError:
        return 0
    total = 0
    for inode in list_for_each_entry(
        "struct inode", superblock.s_inodes.address_of_(), "i_sb_list"
    ):
        total += inode.i_mapping.nrpages.value_()
    return total


def hugepage_counts(prog: Program) -> tuple[int, int]:
    """(total, free) huge pages in base pages, over every hstate."""
    try:
        count = prog["hugetlb_max_hstate"].value_()
        hstates = prog["hstates"]
    except LookupError:
        return 0, 0
    total = free = 0
    for index in range(count):
        hstate = hstates[index]
        pages = 1 << hstate.order.value_()
        total += hstate.nr_huge_pages.value_() * pages
        free += hstate.free_huge_pages.value_() * pages
    return total, free


def meminfo(prog: Program) -> dict[str, int]:
    """The ``kmem -i`` figures, in pages."""
    from drgn.helpers.linux.mm import totalram_pages

    total = totalram_pages(prog)
    free = _stat(prog, "vm_zone_stat", "NR_FREE_PAGES")
    buffers = nr_blockdev_pages(prog)
    swapcache = 0
    try:
        swapcache = _stat(prog, "vm_node_stat", "NR_SWAPCACHE")
    except LookupError:
        pass
    file_pages = _stat(prog, "vm_node_stat", "NR_FILE_PAGES")
    cached = max(file_pages - swapcache - buffers, 0)
    try:
        slab = _stat(prog, "vm_node_stat", "NR_SLAB_RECLAIMABLE_B") + _stat(
            prog, "vm_node_stat", "NR_SLAB_UNRECLAIMABLE_B"
        )
    except LookupError:
        # Before Linux kernel commit d42f3245c7e2 ("mm: memcg: convert vmstat slab
        # counters to bytes") (v5.9) the counters had no _B suffix.
        slab = _stat(prog, "vm_node_stat", "NR_SLAB_RECLAIMABLE") + _stat(
            prog, "vm_node_stat", "NR_SLAB_UNRECLAIMABLE"
        )
    huge_total, huge_free = hugepage_counts(prog)
    swap_total = _optional_global(prog, "total_swap_pages")
    swap_free = _optional_global(prog, "nr_swap_pages")
    overcommit_kbytes = _optional_global(prog, "sysctl_overcommit_kbytes")
    page_kb = prog["PAGE_SIZE"].value_() // 1024
    if overcommit_kbytes:
        commit_limit = overcommit_kbytes // page_kb
    else:
        ratio = _optional_global(prog, "sysctl_overcommit_ratio", 50)
        commit_limit = (total - huge_total) * ratio // 100
    commit_limit += swap_total
    # vm_memory_committed() reads the percpu counter's global count only, as meminfo does.
    committed = 0
    try:
        committed = max(prog["vm_committed_as"].count.value_(), 0)
    except (LookupError, AttributeError):
        pass
    return {
        "total": total,
        "free": free,
        "used": total - free,
        "buffers": buffers,
        "cached": cached,
        "slab": slab,
        "huge_total": huge_total,
        "huge_free": huge_free,
        "swap_total": swap_total,
        "swap_used": swap_total - swap_free,
        "swap_free": swap_free,
        "commit_limit": commit_limit,
        "committed": committed,
        "page_size": prog["PAGE_SIZE"].value_(),
    }


def _line(label: str, pages: int, page_size: int, of: tuple[int, str] | None) -> str:
    if of is None:
        share = f"{'----':>13}"
    else:
        whole, name = of
        share = f"  {pages * 100 // whole if whole else 0:>3}% of {name}"
    return f"{label:>13}{pages:>9}{size_text(pages * page_size):>13}{share}\n"


def render_meminfo(info: dict[str, int]) -> str:
    """crash's ``kmem -i`` table."""
    size = info["page_size"]
    total = (info["total"], "TOTAL MEM")
    huge = (info["huge_total"], "TOTAL HUGE")
    swap = (info["swap_total"], "TOTAL SWAP")
    limit = (info["commit_limit"], "TOTAL LIMIT")
    return "".join(
        [
            "                 PAGES        TOTAL      PERCENTAGE\n",
            _line("TOTAL MEM", info["total"], size, None),
            _line("FREE", info["free"], size, total),
            _line("USED", info["used"], size, total),
            _line("BUFFERS", info["buffers"], size, total),
            _line("CACHED", info["cached"], size, total),
            _line("SLAB", info["slab"], size, total),
            "\n",
            _line("TOTAL HUGE", info["huge_total"], size, None),
            _line("HUGE FREE", info["huge_free"], size, huge),
            "\n",
            _line("TOTAL SWAP", info["swap_total"], size, None),
            _line("SWAP USED", info["swap_used"], size, swap),
            _line("SWAP FREE", info["swap_free"], size, swap),
            "\n",
            _line("COMMIT LIMIT", info["commit_limit"], size, None),
            _line("COMMITTED", info["committed"], size, limit),
        ]
    )


def _stat_names(prog: Program, enum: str, terminator: str) -> list[str]:
    """The enum's names by value, below its ``NR_..._ITEMS`` terminator; of two names
    for one value (``NR_ZONE_LRU_BASE``, ``NR_ZONE_INACTIVE_ANON``) the later, as crash."""
    names: dict[int, str] = {}
    for enumerator in prog.type(enum).enumerators:
        if enumerator.name == terminator:
            break
        names[enumerator.value] = enumerator.name
    return [names[value] for value in sorted(names)]


def vm_stats(prog: Program) -> dict[str, list[tuple[str, int]]]:
    """The global zone and node counters and every CPU's event counters summed."""
    from drgn.helpers.linux.percpu import per_cpu

    from kdumpkit.analyze.facts.cpus import for_each_cpu_in_dump

    zone = prog["vm_zone_stat"]
    node = prog["vm_node_stat"]
    zone_names = _stat_names(prog, "enum zone_stat_item", "NR_VM_ZONE_STAT_ITEMS")
    node_names = _stat_names(prog, "enum node_stat_item", "NR_VM_NODE_STAT_ITEMS")
    event_names = _stat_names(prog, "enum vm_event_item", "NR_VM_EVENT_ITEMS")
    events = [0] * len(event_names)
    for cpu in for_each_cpu_in_dump(prog):
        counts = per_cpu(prog["vm_event_states"], cpu).event.read_().value_()
        events = [total + count for total, count in zip(events, counts, strict=False)]
    return {
        "VM_ZONE_STAT": [(name, zone[i].counter.value_()) for i, name in enumerate(zone_names)],
        "VM_NODE_STAT": [(name, node[i].counter.value_()) for i, name in enumerate(node_names)],
        "VM_EVENT_STATES": list(zip(event_names, events, strict=True)),
    }


def render_vm_stats(stats: dict[str, list[tuple[str, int]]]) -> str:
    """crash's ``kmem -V``: zone and node counters share one name width, events another."""
    counters = stats["VM_ZONE_STAT"] + stats["VM_NODE_STAT"]
    widths = {
        "VM_ZONE_STAT": max(len(n) for n, _ in counters),
        "VM_NODE_STAT": max(len(n) for n, _ in counters),
        "VM_EVENT_STATES": max(len(n) for n, _ in stats["VM_EVENT_STATES"]),
    }
    return "\n".join(
        f"  {title}:\n" + "".join(f"{name:>{widths[title]}}: {value}\n" for name, value in rows)
        for title, rows in stats.items()
    )


def render_zones(prog: Program) -> str:
    """crash's ``kmem -z``: each node's zones, their size, watermarks and counters."""
    from drgn.helpers.linux.mmzone import for_each_online_pgdat

    names = _stat_names(prog, "enum zone_stat_item", "NR_VM_ZONE_STAT_ITEMS")
    width = max(len(name) for name in names)
    blocks = []
    for pgdat in for_each_online_pgdat(prog):
        node = pgdat.node_id.value_()
        for index, zone in enumerate(pgdat.node_zones):
            head = (
                f"NODE: {node}  ZONE: {index}  ADDR: {zone.address_of_().value_():x}  "
                f'NAME: "{zone.name.string_().decode()}"\n'
            )
            spanned, present = zone.spanned_pages.value_(), zone.present_pages.value_()
            if not spanned:
                blocks.append(head + "  [unpopulated]\n")
                continue
            low, mid, high = (zone._watermark[i].value_() for i in range(3))
            # crash names PRESENT only where holes make it differ from the span
            size = f"SIZE: {spanned}" + (f"  PRESENT: {present}" if present != spanned else "")
            counters = "".join(
                f"{name:>{width}}: {zone.vm_stat[i].counter.value_()}\n"
                for i, name in enumerate(names)
            )
            blocks.append(
                head
                + f"  {size}  MIN/LOW/HIGH: {low}/{mid}/{high}\n"
                + "  VM_STAT:\n"
                + counters
                + "\n"
            )
    return "\n".join(blocks) + "\n"


def render_hstates(prog: Program) -> str:
    """crash's ``kmem -h``: each huge page size's free and total pages."""
    lines = ["     HSTATE        SIZE    FREE   TOTAL  NAME\n"]
    hstates = prog["hstates"]
    for index in range(prog["hugetlb_max_hstate"].value_()):
        hstate = hstates[index]
        kib = prog["PAGE_SIZE"].value_() // 1024 << hstate.order.value_()
        size = f"{kib >> 20}GB" if kib >= 1 << 20 else f"{kib >> 10}MB"
        lines.append(
            f"{hstate.address_of_().value_():x}{size:>7}"
            f"{hstate.free_huge_pages.value_():>8}{hstate.nr_huge_pages.value_():>8}"
            f"  {hstate.name.string_().decode()}\n"
        )
    return "".join(lines)


@register
class Kmem(DrgnCrashCommand):
    """``kmem -i``, ``-V``, ``-z`` and ``-h`` are ours; the others (-s, -p, ...) drgn's."""

    name = "kmem"
    help = "kernel memory (-i summary, -V vm_stat, -z zones, -h hugepages; -s slab... drgn)"

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        if args.argv == ["-z"]:
            text = render_zones(prog)
            return Result(text, [{"text": text}])
        if args.argv == ["-h"]:
            text = render_hstates(prog)
            return Result(text, [{"text": text}])
        if args.argv == ["-V"]:
            stats = vm_stats(prog)
            return Result(render_vm_stats(stats), [stats])
        if args.argv != ["-i"]:
            return super().run(prog, args)
        info = meminfo(prog)
        return Result(render_meminfo(info), [info])
