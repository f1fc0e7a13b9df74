"""Which pages a dump needs: makedumpfile's dump levels, decided from struct pages.

Mirrors makedumpfile's ``__exclude_unnecessary_pages``: for every RAM pfn with a
struct page, the first matching test wins —

1. free (level bit 16): a buddy block head, ``_mapcount == PAGE_BUDDY_MAPCOUNT_VALUE``
   and not slab; ``1 << page.private`` pages.  Unaccepted memory (Linux 6.16,
   ``PAGE_UNACCEPTED_MAPCOUNT_VALUE``) counts as free: a MAX_ORDER block.
2. cache without PG_private (bit 2), 3. any cache (bit 4): PG_lru, or PG_swapcache
   with PG_swapbacked; never anonymous.
4. user data (bit 8): anonymous (``mapping & PAGE_MAPPING_ANON``) or hugetlb.
5. hwpoison and 6. logically offline pages: always.

A compound head takes its whole compound page (``1 << order``) with it; tail pages
are skipped.  Zero pages (bit 1) are found by content at write time.  Kernel
differences are decided by which VMCOREINFO keys exist, never by version.

The scan reads struct pages in fixed windows of :data:`WINDOW` pfns and decides
each window with numpy, so memory stays bounded whatever the RAM size; the keep
bitmap is packed, a bit per pfn, and unpacked a window at a time.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from kdumpkit.dump.base import BITMAP_WINDOW, Bitmap, Dump
from kdumpkit.dump.errors import DumpError
from kdumpkit.kernel.memmap import PageLayout, SparseMem

DL_EXCLUDE_ZERO = 1
DL_EXCLUDE_CACHE = 2
DL_EXCLUDE_CACHE_PRI = 4
DL_EXCLUDE_USER_DATA = 8
DL_EXCLUDE_FREE = 16
MAX_DUMP_LEVEL = 31
#: pfns decided per numpy pass (4 MiB of 64-byte struct pages).
WINDOW = 1 << 16
#: makedumpfile reads struct pages in batches of 512 and looks at a compound
#: head's first tail only when the head is not the last of its batch.
PGMM_CACHED = 512
PAGE_MAPPING_ANON = 1
_U32 = 0xFFFFFFFF


class FilterError(DumpError):
    """Pages cannot be classified (bad dump level, or VMCOREINFO lacks what is needed)."""


class PageClass(enum.IntEnum):
    """Why a page was excluded; the order is makedumpfile's report order."""

    KEPT = 0
    CACHE = 1
    CACHE_PRIVATE = 2
    USER = 3
    FREE = 4
    HWPOISON = 5
    OFFLINE = 6


#: makedumpfile's wording in its ``--show-stats`` report.
CLASS_LABELS = {
    PageClass.CACHE: "Non-private cache pages",
    PageClass.CACHE_PRIVATE: "Private cache pages",
    PageClass.USER: "User process data pages",
    PageClass.FREE: "Free pages",
    PageClass.HWPOISON: "Hwpoison pages",
    PageClass.OFFLINE: "Offline pages",
}


@dataclass(frozen=True)
class PageRules:
    """The page-flag numbers and type values the running kernel exported."""

    pg_lru: int
    pg_private: int
    pg_swapcache: int
    pg_swapbacked: int | None
    pg_slab: int | None
    pg_hwpoison: int | None
    pg_head_mask: int | None
    pg_hugetlb: int | None
    buddy_value: int | None
    slab_value: int | None
    hugetlb_value: int | None
    offline_value: int | None
    unaccepted_value: int | None
    hugetlb_dtor: int | None
    #: LENGTH(zone.free_area): buddy orders are below this
    nr_orders: int

    @classmethod
    def from_dump(cls, dump: Dump) -> PageRules:
        """Read the rules from the dump's VMCOREINFO."""
        info = dump.vmcoreinfo
        if info is None:
            raise FilterError(f"{dump.name}: no VMCOREINFO: dump levels above 1 need it")
        required = {name: info.number(name) for name in ("PG_lru", "PG_private", "PG_swapcache")}
        missing = [name for name, value in required.items() if value is None]
        if missing:
            raise FilterError(f"{dump.name}: VMCOREINFO lacks NUMBER({missing[0]})")

        for name in ("PG_lru", "PG_private", "PG_swapcache", "PG_swapbacked", "PG_slab",
                     "PG_hwpoison", "PG_hugetlb"):  # fmt: skip
            bit = info.number(name)
            if bit is not None and not 0 <= bit < 64:
                raise FilterError(
                    f"{dump.name}: VMCOREINFO NUMBER({name})={bit} is not a page flag"
                )
        head_mask = info.number("PG_head_mask")
        if head_mask is not None and not 0 < head_mask < 1 << 64:
            raise FilterError(
                f"{dump.name}: VMCOREINFO NUMBER(PG_head_mask)={head_mask} is no mask"
            )
        nr_orders = info.length("zone.free_area") or 11
        if not 0 < nr_orders <= 64:
            raise FilterError(f"{dump.name}: LENGTH(zone.free_area)={nr_orders} is implausible")

        def u32(name: str) -> int | None:
            value = info.number(name)
            return None if value is None else value & _U32

        return cls(
            pg_lru=required["PG_lru"] or 0,
            pg_private=required["PG_private"] or 0,
            pg_swapcache=required["PG_swapcache"] or 0,
            pg_swapbacked=info.number("PG_swapbacked"),
            pg_slab=info.number("PG_slab"),
            pg_hwpoison=info.number("PG_hwpoison"),
            pg_head_mask=info.number("PG_head_mask"),
            pg_hugetlb=info.number("PG_hugetlb"),
            buddy_value=u32("PAGE_BUDDY_MAPCOUNT_VALUE"),
            slab_value=u32("PAGE_SLAB_MAPCOUNT_VALUE"),
            hugetlb_value=u32("PAGE_HUGETLB_MAPCOUNT_VALUE"),
            offline_value=u32("PAGE_OFFLINE_MAPCOUNT_VALUE"),
            unaccepted_value=u32("PAGE_UNACCEPTED_MAPCOUNT_VALUE"),
            hugetlb_dtor=info.number("HUGETLB_PAGE_DTOR"),
            nr_orders=nr_orders,
        )


@dataclass
class FilterResult:
    """The pages to keep and why the others were dropped."""

    dump_level: int
    #: a bit per pfn: write this page (packed: 32 MiB for 1 TiB of RAM)
    keep_bits: Bitmap
    #: pages excluded per class (pages already absent from the input not counted)
    excluded: dict[PageClass, int] = field(default_factory=dict)
    #: pages with data in the input
    input_pages: int = 0
    #: RAM pages of the input (with or without data)
    ram_pages: int = 0
    max_pfn: int = 0
    page_size: int = 4096
    warnings: list[str] = field(default_factory=list)

    @property
    def keep(self) -> np.ndarray:
        """The keep bitmap unpacked, a bool per pfn (a byte per pfn: for small dumps)."""
        return self.keep_bits.to_bool()

    @property
    def kept_pages(self) -> int:
        return self.keep_bits.count()

    def kept_sample(self, count: int) -> np.ndarray:
        """Up to ``count`` kept pfns spread evenly over the kept pages (by rank, as
        ``flatnonzero(keep)[linspace(...)]`` picks them), found a window of the
        packed bitmap at a time."""
        total = self.kept_pages
        if total == 0 or count <= 0:
            return np.zeros(0, dtype=np.int64)
        ranks = np.linspace(0, total - 1, min(count, total)).astype(np.int64)
        picks = []
        seen = 0
        for lo in range(0, self.keep_bits.size, BITMAP_WINDOW):
            pfns = np.flatnonzero(self.keep_bits.window(lo, lo + BITMAP_WINDOW))
            mine = ranks[(ranks >= seen) & (ranks < seen + len(pfns))]
            picks.append(pfns[mine - seen].astype(np.int64) + lo)
            seen += len(pfns)
        return np.concatenate(picks)


def _column(buf: bytes | bytearray, count: int, stride: int, offset: int, dtype: str) -> np.ndarray:
    """One field of ``count`` structs of ``stride`` bytes, as a strided numpy view."""
    return np.ndarray(shape=(count,), dtype=dtype, buffer=buf, offset=offset, strides=(stride,))


def _bit(flags: np.ndarray, nr: int | None) -> np.ndarray:
    if nr is None:
        return np.zeros(flags.shape, dtype=bool)
    return (flags & np.uint64(1 << nr)) != 0


def classify_struct_pages(
    buf: bytes | bytearray,
    first_pfn: int,
    count: int,
    layout: PageLayout,
    rules: PageRules,
    dump_level: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decide ``count`` consecutive struct pages (``buf`` holds one more, zero, at the end).

    Returns ``(cls, order, evaluated)``: the class each page would exclude itself as
    (0 = keep), the order of the range it takes with it, and which pages are heads
    or single pages that makedumpfile looks at (tail pages are not).
    """
    size = layout.size
    pfns = np.arange(first_pfn, first_pfn + count, dtype=np.uint64)
    flags = _column(buf, count, size, layout.flags, "<u8")
    mapping = _column(buf, count, size, layout.mapping, "<u8")
    if layout.mapcount is not None:
        mapcount = _column(buf, count, size, layout.mapcount, "<u4")
    else:
        mapcount = np.zeros(count, dtype=np.uint32)
    if layout.private is not None:
        private = _column(buf, count, size, layout.private, "<u8")
    else:
        private = np.zeros(count, dtype=np.uint64)
    if layout.compound_head is not None:
        tail = (_column(buf, count, size, layout.compound_head, "<u8") & np.uint64(1)) != 0
    else:
        tail = np.zeros(count, dtype=bool)

    # --- compound heads: order and hugetlb-ness from the first tail page ---------------------
    if rules.pg_head_mask is not None:
        head = (flags & np.uint64(rules.pg_head_mask)) != 0
    else:
        head = np.zeros(count, dtype=bool)
    head &= (pfns % np.uint64(PGMM_CACHED)) != np.uint64(PGMM_CACHED - 1)
    next_flags = _column(buf, count, size, size + layout.flags, "<u8")
    order = np.zeros(count, dtype=np.uint64)
    hugetlb = np.zeros(count, dtype=bool)
    if rules.hugetlb_value is not None or rules.pg_hugetlb is not None:
        # Linux 6.6+: the order is the low byte of the first tail's flags (folio
        # _flags_1); hugetlb is a page type since 6.9, a tail page flag in 6.6 - 6.8.
        order = np.where(head, next_flags & np.uint64(0xFF), 0).astype(np.uint64)
        if rules.hugetlb_value is not None:
            hugetlb = head & (mapcount == np.uint32(rules.hugetlb_value))
        else:
            hugetlb = head & _bit(next_flags, rules.pg_hugetlb)
    else:
        width = "<u1" if layout.order_width == 1 else "<u2"
        if layout.order_offset is not None:
            raw = _column(buf, count, size, layout.order_offset, width).astype(np.uint64)
            order = np.where(head, raw, 0).astype(np.uint64)
        if layout.dtor_offset is not None and rules.hugetlb_dtor is not None:
            dtor = _column(buf, count, size, layout.dtor_offset, width).astype(np.int64)
            hugetlb = head & (dtor == rules.hugetlb_dtor)
    bad_order = (order >= np.uint64(64)) | (
        (pfns & ((np.uint64(1) << np.minimum(order, np.uint64(63))) - np.uint64(1))) != 0
    )
    order[bad_order] = 0

    # --- page kinds ------------------------------------------------------------------------
    if rules.slab_value is not None:
        slab = mapcount == np.uint32(rules.slab_value)  # Linux 6.10+: a page type
    else:
        slab = _bit(flags, rules.pg_slab)
    anon = ((mapping & np.uint64(PAGE_MAPPING_ANON)) != 0) & ~slab
    lru = _bit(flags, rules.pg_lru)
    swapcache = _bit(flags, rules.pg_swapcache)
    if rules.pg_swapbacked is not None:
        # PG_swapcache means swap cache only together with PG_swapbacked (Linux 4.10+).
        swapcache &= _bit(flags, rules.pg_swapbacked)
    cache = lru | swapcache
    private_flag = _bit(flags, rules.pg_private)

    evaluated = ~tail
    cls = np.zeros(count, dtype=np.uint8)
    out_order = order.copy()
    undecided = evaluated.copy()

    def take(
        mask: np.ndarray, page_class: PageClass, range_order: np.ndarray | None = None
    ) -> None:
        nonlocal undecided
        chosen = undecided & mask
        cls[chosen] = page_class
        if range_order is not None:
            out_order[chosen] = range_order[chosen]
        undecided &= ~chosen

    if dump_level & DL_EXCLUDE_FREE:
        if rules.buddy_value is not None and layout.private is not None:
            buddy = ~slab & (mapcount == np.uint32(rules.buddy_value))
            # An order past the buddy allocator's is not a buddy head: keep the page.
            buddy &= private < np.uint64(rules.nr_orders)
            take(buddy, PageClass.FREE, private.astype(np.uint64))
        if rules.unaccepted_value is not None:
            unaccepted = mapcount == np.uint32(rules.unaccepted_value)
            take(unaccepted, PageClass.FREE, np.full(count, rules.nr_orders - 1, dtype=np.uint64))
    if dump_level & DL_EXCLUDE_CACHE:
        take(cache & ~private_flag & ~anon, PageClass.CACHE)
    if dump_level & DL_EXCLUDE_CACHE_PRI:
        take(cache & ~anon & private_flag, PageClass.CACHE_PRIVATE)
        take(cache & ~anon, PageClass.CACHE)
    if dump_level & DL_EXCLUDE_USER_DATA:
        take(anon | hugetlb, PageClass.USER)
    take(_bit(flags, rules.pg_hwpoison), PageClass.HWPOISON)
    if rules.offline_value is not None:
        take(~slab & (mapcount == np.uint32(rules.offline_value)), PageClass.OFFLINE)
    out_order[cls == 0] = 0
    return cls, out_order, evaluated


def needs_scan(dump_level: int, rules: PageRules | None) -> bool:
    """Whether any exclusion other than zero pages applies (makedumpfile's create_2nd_bitmap)."""
    if dump_level & (DL_EXCLUDE_CACHE | DL_EXCLUDE_CACHE_PRI | DL_EXCLUDE_USER_DATA):
        return True
    if rules is None:
        return False
    if rules.pg_hwpoison is not None:
        return True
    return bool(dump_level & DL_EXCLUDE_FREE) and rules.buddy_value is not None


class _Excluder:
    """Applies exclusion ranges in pfn order, as makedumpfile's sequential loop would.

    The packed keep bitmap is worked on a window at a time: :meth:`apply` takes
    the window's bits unpacked (``block``) and changes them in place."""

    def __init__(self, keep: Bitmap) -> None:
        self.keep = keep
        self.counts = np.zeros(len(PageClass), dtype=np.int64)
        #: heads below this pfn were swallowed by an earlier range and are not looked at
        self.covered_until = 0
        #: the unpacked window being decided: (first pfn, bits)
        self.block: tuple[int, np.ndarray] | None = None

    def exclude(self, start: int, end: int, page_class: int) -> None:
        """Clear ``[start, end)``, in the unpacked window where it lies there."""
        if self.block is not None:
            first, bits = self.block
            lo, hi = max(start, first), min(end, first + len(bits))
            if lo < hi:
                self.counts[page_class] += int(np.count_nonzero(bits[lo - first : hi - first]))
                bits[lo - first : hi - first] = False
            before_end = min(end, first)
            if start < before_end:
                self._exclude_packed(start, before_end, page_class)
            start = max(start, first + len(bits))
        if start < end:
            self._exclude_packed(start, end, page_class)

    def _exclude_packed(self, start: int, end: int, page_class: int) -> None:
        self.counts[page_class] += self.keep.count(start, end)
        self.keep.fill(start, end, False)

    def apply(
        self, first_pfn: int, cls: np.ndarray, order: np.ndarray, candidates: np.ndarray
    ) -> None:
        idx = np.flatnonzero(candidates & (cls != 0))
        if idx.size == 0:
            return
        starts = idx.astype(np.int64) + first_pfn
        ends = starts + (np.int64(1) << order[idx].astype(np.int64))
        prev = np.maximum.accumulate(np.concatenate(([self.covered_until], ends[:-1])))
        accepted = starts >= prev
        # A swallowed head whose range reaches past the cover would have been ignored by
        # the sequential loop but raises ``prev`` here: decide such windows one by one.
        if np.any(~accepted & (ends > prev)):
            self._apply_sequentially(starts, ends, cls[idx])
            return
        starts, ends, classes = starts[accepted], ends[accepted], cls[idx][accepted]
        n = len(cls)
        local_end = np.minimum(ends - first_pfn, n)
        delta = np.zeros(n + 1, dtype=np.int16)
        np.add.at(delta, starts - first_pfn, classes.astype(np.int16))
        np.add.at(delta, local_end, -classes.astype(np.int16))
        painted = np.cumsum(delta[:n]).astype(np.uint8)
        assert self.block is not None and self.block[0] == first_pfn
        block = self.block[1][:n]
        newly = block & (painted != 0)
        self.counts += np.bincount(painted[newly], minlength=len(PageClass))[: len(PageClass)]
        block &= painted == 0
        beyond = ends > first_pfn + n  # ranges past the window (1 GiB hugetlb pages)
        for e, c in zip(ends[beyond].tolist(), classes[beyond].tolist(), strict=True):
            self.exclude(first_pfn + n, min(e, self.keep.size), c)
        self.covered_until = max(self.covered_until, int(ends.max()))

    def _apply_sequentially(
        self, starts: np.ndarray, ends: np.ndarray, classes: np.ndarray
    ) -> None:
        for s, e, c in zip(starts.tolist(), ends.tolist(), classes.tolist(), strict=True):
            if s < self.covered_until:
                continue
            self.exclude(s, min(e, self.keep.size), c)
            self.covered_until = e


def exclude_unnecessary_pages(
    dump: Dump,
    dump_level: int,
    *,
    window: int = WINDOW,
    progress: Callable[[int, int], None] | None = None,
) -> FilterResult:
    """Classify every page of ``dump`` for ``dump_level`` (0-31): the pages to keep.

    Pages already absent from the input stay absent.  Zero pages (bit 1) are left
    to the writer, which sees page contents.
    """
    if not 0 <= dump_level <= MAX_DUMP_LEVEL:
        raise FilterError(f"dump level {dump_level} is outside 0..{MAX_DUMP_LEVEL}")
    if window <= 0 or window % PGMM_CACHED:
        raise FilterError(f"window {window} is not a positive multiple of {PGMM_CACHED}")
    keep = dump.present_bits()  # a new bitmap, ours to change
    result = FilterResult(
        dump_level=dump_level,
        keep_bits=keep,
        input_pages=keep.count(),
        ram_pages=dump.count_windows(ram=True),
        max_pfn=dump.max_pfn,
        page_size=dump.page_size,
    )
    if (dump_level & ~DL_EXCLUDE_ZERO) == 0 and dump.vmcoreinfo is None:
        return result
    rules = PageRules.from_dump(dump)
    if dump_level & DL_EXCLUDE_FREE and (rules.buddy_value is None):
        result.warnings.append(
            "free pages are kept: VMCOREINFO has no NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)"
        )
    if not needs_scan(dump_level, rules):
        return result
    memmap = SparseMem(dump)
    excluder = _Excluder(keep)
    total = sum(end - start for start, end, _ in memmap.ranges())
    done = 0
    for start, end, mem_map in memmap.ranges():
        # A range that ran past the previous mem_map stays excluded, but the heads of
        # this one are looked at afresh, as makedumpfile does per mem_map.
        excluder.covered_until = min(excluder.covered_until, start)
        pfn = start
        while pfn < end:
            stop = min(end, (pfn // window + 1) * window)
            count = stop - pfn
            buf = memmap.read_struct_pages(
                mem_map + (pfn - start) * memmap.layout.size, count, pad=1
            )
            cls, order, evaluated = classify_struct_pages(
                buf, pfn, count, memmap.layout, rules, dump_level
            )
            # The keep bits of the window, unpacked from its first whole byte.
            first = pfn & ~7
            bits = keep.window(first, stop).copy()
            excluder.block = (pfn, bits[pfn - first :])
            excluder.apply(pfn, cls, order, evaluated & dump.ram_window(pfn, stop))
            excluder.block = None
            keep.set_window(first, bits)
            done += count
            pfn = stop
            if progress is not None:
                progress(done, total)
    result.excluded = {
        PageClass(i): int(n) for i, n in enumerate(excluder.counts) if i != PageClass.KEPT
    }
    return result
