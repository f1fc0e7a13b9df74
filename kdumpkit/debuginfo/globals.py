"""Global variables, functions and constants for drgn, without DWARF.

Kernel BTF describes only per-cpu variables (``VAR`` entries of the
``.data..percpu`` DATASEC) and functions (``FUNC``).  Every other global that
drgn's helpers and our commands read is typed here by hand, in
:data:`GLOBAL_TYPES`; its address comes from kallsyms, and its declared type is
checked against BTF and the symbol's extent when first used.  Enumerators come
from BTF; the few constants BTF lacks (members of anonymous enums that no type
refers to, and macros) are in :data:`MISSING_CONSTANTS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import drgn

from kdumpkit.debuginfo.btf import Btf, BtfError, Kind
from kdumpkit.debuginfo.btf_types import BtfTypes
from kdumpkit.debuginfo.symbols import KernelSymbols

#: Array length resolver: (program, symbol address, symbol size, element size) -> length.
LengthFn = Callable[[drgn.Program, int, int, int], int]


@dataclass(frozen=True)
class GlobalType:
    """How to type one global: C type spellings to try in order (newer kernels first)."""

    spellings: tuple[str, ...]
    #: For arrays declared without a length (``[]``): how to find it.
    length: LengthFn | None = None


def _length_from_enum(enumerator: str) -> LengthFn:
    """Length given by an enum constant in BTF (e.g. NR_VM_ZONE_STAT_ITEMS)."""

    def length(prog: drgn.Program, address: int, size: int, elem_size: int) -> int:
        return prog.constant(enumerator).value_()

    return length


def _length_from_symbol(prog: drgn.Program, address: int, size: int, elem_size: int) -> int:
    """Length bounded by the symbol's kallsyms extent (the gap to the next symbol).

    Only right for arrays the linker packs tightly; the gap includes padding.
    """
    return max(1, size // elem_size) if size else 1


def _length_of_task_state_array(prog: drgn.Program, address: int, size: int, elem_size: int) -> int:
    """Entries of ``task_state_array``: pointers to "R (running)", "S (sleeping)", ...

    kallsyms' extent includes padding (128 bytes for 9 entries on 6.1), so count the
    leading entries that point at strings of that shape.
    """
    count = 0
    for i in range(max(1, size // 8) if size else 16):
        text = _read_c_string(prog, prog.read_u64(address + 8 * i))
        if len(text) < 4 or text[1:3] != b" (" or not text.endswith(b")"):
            break
        count += 1
    return max(count, 1)


def _length_of_nonzero_entries(prog: drgn.Program, address: int, size: int, elem_size: int) -> int:
    """Leading entries that are not all zero bytes: the extent's padding is zeros
    (``taint_flags``, ``sys_call_table``: arrays whose every real entry is non-zero)."""
    limit = _length_from_symbol(prog, address, size, elem_size)
    data = prog.read(address, limit * elem_size)
    for i in range(limit):
        if not any(data[i * elem_size : (i + 1) * elem_size]):
            return max(i, 1)
    return limit


def _length_to_sentinel(prog: drgn.Program, address: int, size: int, elem_size: int) -> int:
    """Entries up to and including the first all-zero one (a ``{0, NULL}`` end marker)."""
    return min(
        _length_of_nonzero_entries(prog, address, size, elem_size) + 1,
        _length_from_symbol(prog, address, size, elem_size),
    )


def _length_of_global(name: str) -> LengthFn:
    """The length of another global array declared with the same bound."""

    def length(prog: drgn.Program, address: int, size: int, elem_size: int) -> int:
        return prog[name].type_.length  # type: ignore[no-any-return]

    return length


def _length_of_string(prog: drgn.Program, address: int, size: int, elem_size: int) -> int:
    """A string constant's length including its NUL (the extent may hold more)."""
    return len(_read_c_string(prog, address, min(size or 4096, 4096))) + 1


def _read_c_string(prog: drgn.Program, address: int, limit: int = 32) -> bytes:
    """Up to ``limit`` bytes of a C string; a fault ends it (at the page boundary)."""
    try:
        raw = prog.read(address, limit)
    except drgn.FaultError:
        in_page = min(limit, ((address | 0xFFF) + 1) - address)
        try:
            raw = prog.read(address, in_page)
        except drgn.FaultError:
            return b""
    return raw.split(b"\0", 1)[0]


def _anonymous_tk_core(prog: drgn.Program) -> drgn.Type:
    """``tk_core``: ``static struct { seqcount_raw_spinlock_t seq; struct timekeeper
    timekeeper; } ____cacheline_aligned`` (kernel/time/timekeeping.c)."""
    seq = prog.type("seqcount_raw_spinlock_t")
    keeper = prog.type("struct timekeeper")
    offset = (drgn.sizeof(seq) + 7) // 8 * 8
    # ____cacheline_aligned aligns the variable, not the struct's size (DWARF: 288 on 6.1).
    size = (offset + drgn.sizeof(keeper) + 7) // 8 * 8
    return prog.struct_type(
        None,
        size,
        [drgn.TypeMember(seq, "seq", 0), drgn.TypeMember(keeper, "timekeeper", offset * 8)],
    )


#: Globals typed by hand, as the kernel declares them.  Names that moved between
#: versions are separate entries; a missing symbol simply does not resolve.
GLOBAL_TYPES: dict[str, GlobalType] = {
    "init_task": GlobalType(("struct task_struct",)),
    "init_pid_ns": GlobalType(("struct pid_namespace",)),
    "init_uts_ns": GlobalType(("struct uts_namespace",)),
    "init_mm": GlobalType(("struct mm_struct",)),
    "init_nsproxy": GlobalType(("struct nsproxy",)),
    "init_net": GlobalType(("struct net",)),
    "init_ipc_ns": GlobalType(("struct ipc_namespace",)),
    "init_fs": GlobalType(("struct fs_struct",)),
    "init_files": GlobalType(("struct files_struct",)),
    "init_cred": GlobalType(("struct cred",)),
    "jiffies": GlobalType(("volatile unsigned long",)),
    "jiffies_64": GlobalType(("u64",)),
    "prb": GlobalType(("struct printk_ringbuffer *",)),
    "printk_rb_static": GlobalType(("struct printk_ringbuffer",)),
    "clear_seq": GlobalType(("struct latched_seq", "u64")),
    "modules": GlobalType(("struct list_head",)),
    "mod_tree": GlobalType(("struct mod_tree_root",)),
    "panic_cpu": GlobalType(("atomic_t",)),
    "panic_on_oops": GlobalType(("int",)),
    "crash_notes": GlobalType(("note_buf_t *", "u32 *")),
    "__per_cpu_offset": GlobalType(("unsigned long []",), _length_from_symbol),
    "nr_cpu_ids": GlobalType(("unsigned int",)),
    "__cpu_online_mask": GlobalType(("struct cpumask",)),
    "__cpu_possible_mask": GlobalType(("struct cpumask",)),
    "__cpu_present_mask": GlobalType(("struct cpumask",)),
    "__cpu_active_mask": GlobalType(("struct cpumask",)),
    "__cpu_dying_mask": GlobalType(("struct cpumask",)),
    "tainted_mask": GlobalType(("unsigned long",)),
    "taint_flags": GlobalType(("const struct taint_flag []",), _length_of_nonzero_entries),
    "tk_core": GlobalType(()),  # anonymous struct, built by _anonymous_tk_core
    "avenrun": GlobalType(("unsigned long [3]",)),
    "_totalram_pages": GlobalType(("atomic_long_t",)),
    "totalram_pages": GlobalType(("unsigned long",)),  # before 5.0's atomic _totalram_pages
    "totalreserve_pages": GlobalType(("unsigned long",)),
    "totalcma_pages": GlobalType(("unsigned long",)),
    "task_state_array": GlobalType(("const char *const []",), _length_of_task_state_array),
    "blockdev_superblock": GlobalType(("struct super_block *",)),
    "super_blocks": GlobalType(("struct list_head",)),
    "vm_zone_stat": GlobalType(("atomic_long_t []",), _length_from_enum("NR_VM_ZONE_STAT_ITEMS")),
    "vm_node_stat": GlobalType(("atomic_long_t []",), _length_from_enum("NR_VM_NODE_STAT_ITEMS")),
    "vm_numa_event": GlobalType(("atomic_long_t []",), _length_from_enum("NR_VM_NUMA_EVENT_ITEMS")),
    "vm_committed_as": GlobalType(("struct percpu_counter",)),
    "sysctl_overcommit_ratio": GlobalType(("int",)),
    "sysctl_overcommit_kbytes": GlobalType(("unsigned long",)),
    "sysctl_overcommit_memory": GlobalType(("int",)),
    "total_swap_pages": GlobalType(("long",)),
    "nr_swap_pages": GlobalType(("atomic_long_t",)),
    "nr_swapfiles": GlobalType(("unsigned int",)),
    "swap_info": GlobalType(("struct swap_info_struct *[]",), _length_from_symbol),
    "swapper_spaces": GlobalType(("struct address_space *[]",), _length_from_symbol),
    # [MAX_SWAPFILES] both; its entries may be 0, swap_info's extent has no padding.
    "nr_swapper_spaces": GlobalType(("unsigned int []",), _length_of_global("swap_info")),
    "hstates": GlobalType(("struct hstate []",), _length_from_symbol),
    "hugetlb_max_hstate": GlobalType(("int",)),
    "mem_section": GlobalType(("struct mem_section **",)),
    "vmemmap_base": GlobalType(("unsigned long",)),
    "page_offset_base": GlobalType(("unsigned long",)),
    "vmalloc_base": GlobalType(("unsigned long",)),
    "phys_base": GlobalType(("unsigned long",)),
    "max_pfn": GlobalType(("unsigned long",)),
    "max_low_pfn": GlobalType(("unsigned long",)),
    "min_low_pfn": GlobalType(("unsigned long",)),
    "high_memory": GlobalType(("void *",)),
    "node_data": GlobalType(("pg_data_t *[]", "struct pglist_data *[]"), _length_from_symbol),
    "contig_page_data": GlobalType(("struct pglist_data",)),
    "node_states": GlobalType(("nodemask_t []",), _length_from_enum("NR_NODE_STATES")),
    "nr_node_ids": GlobalType(("unsigned int",)),
    "nr_online_nodes": GlobalType(("unsigned int",)),
    "slab_caches": GlobalType(("struct list_head",)),
    "vmap_area_list": GlobalType(("struct list_head",)),
    "vmap_area_root": GlobalType(("struct rb_root",)),
    "net_namespace_list": GlobalType(("struct list_head",)),
    "nr_threads": GlobalType(("int",)),
    "total_forks": GlobalType(("unsigned long",)),
    "max_threads": GlobalType(("int",)),
    "pid_max": GlobalType(("int",)),
    "linux_banner": GlobalType(("const char []",), _length_of_string),
    "saved_command_line": GlobalType(("char *",)),
    "boot_command_line": GlobalType(("char []",), _length_from_symbol),  # COMMAND_LINE_SIZE
    "boot_cpu_data": GlobalType(("struct cpuinfo_x86",)),
    "crashk_res": GlobalType(("struct resource",)),
    "crashk_low_res": GlobalType(("struct resource",)),
    "iomem_resource": GlobalType(("struct resource",)),
    "ioport_resource": GlobalType(("struct resource",)),
    "kexec_crash_image": GlobalType(("struct kimage *",)),
    "root_task_group": GlobalType(("struct task_group",)),
    "sparse_irqs": GlobalType(("struct maple_tree", "struct xarray")),
    # radix_tree_root is a macro for xarray since 4.20.
    "irq_desc_tree": GlobalType(("struct xarray", "struct radix_tree_root")),
    "btf_modules": GlobalType(("struct list_head",)),
    "nr_irqs": GlobalType(("int",)),
    # Linux kernel commit b99dc723b12e ("genirq: Expose nr_irqs in core code") (in
    # v7.2) renamed it; drgn 0.3.0's irq_get_nr_irqs() reads the new name first.
    "total_nr_irqs": GlobalType(("unsigned int",)),
    "block_class": GlobalType(("const struct class", "struct class")),
    "major_names": GlobalType(("struct blk_major_name *[]",), _length_from_symbol),
    "uidhash_table": GlobalType(("struct hlist_head []",), _length_from_symbol),
    "memblock": GlobalType(("struct memblock",)),
    "vm_event_states": GlobalType(("struct vm_event_state",)),
    "idt_table": GlobalType(("gate_desc []",), _length_from_symbol),
    "sys_call_table": GlobalType(("const sys_call_ptr_t []",), _length_of_nonzero_entries),
    "console_drivers": GlobalType(("struct console *",)),
    "log_buf_len": GlobalType(("u32", "int")),
    "system_state": GlobalType(("enum system_states",)),
    "oops_in_progress": GlobalType(("int",)),
    # 6.17 "timekeeping: Introduce struct tk_data": tk_core became timekeeper_data[0].
    "timekeeper_data": GlobalType(("struct tk_data []",), _length_from_enum("TIMEKEEPERS_MAX")),
    "prog_idr": GlobalType(("struct idr",)),
    "map_idr": GlobalType(("struct idr",)),
    "link_idr": GlobalType(("struct idr",)),
    "btf_idr": GlobalType(("struct idr",)),
    # drgn's helpers and crash commands (dev, kmem ADDR, sys -i, net, mod):
    "task_struct_cachep": GlobalType(("struct kmem_cache *",)),
    "cdev_map": GlobalType(("struct kobj_map *",)),
    "chrdevs": GlobalType(("struct char_device_struct *[]",), _length_from_symbol),
    "bus_kset": GlobalType(("struct kset *",)),
    "class_kset": GlobalType(("struct kset *",)),
    "slab_kset": GlobalType(("struct kset *",)),
    "bus_ktype": GlobalType(("struct kobj_type",)),
    "class_ktype": GlobalType(("struct kobj_type",)),
    "device_ktype": GlobalType(("struct kobj_type",)),
    "driver_ktype": GlobalType(("struct kobj_type",)),
    "module_ktype": GlobalType(("struct kobj_type",)),
    "memory_subsys": GlobalType(("struct bus_type",)),
    "pci_bus_type": GlobalType(("struct bus_type",)),
    "pci_root_buses": GlobalType(("struct list_head",)),
    "sysfs_root_kn": GlobalType(("struct kernfs_node *",)),
    "cgrp_dfl_root": GlobalType(("struct cgroup_root",)),
    "init_time_ns": GlobalType(("struct time_namespace",)),
    "arp_tbl": GlobalType(("struct neigh_table",)),
    "softirq_vec": GlobalType(("struct softirq_action []",), _length_from_enum("NR_SOFTIRQS")),
    "gfpflag_names": GlobalType(("const struct trace_print_flags []",), _length_to_sentinel),
    "poll_spurious_irq_timer": GlobalType(("struct timer_list",)),
    "__highest_present_section_nr": GlobalType(("unsigned long",)),
    "ipc_mni_shift": GlobalType(("int",)),
    "log_buf": GlobalType(("char *",)),
    "vermagic": GlobalType(("const char []",), _length_of_string),
    # Per-CPU variables, for kernels whose BTF has no VAR entries at all (Debian 11's
    # 5.10: built with pahole's --skip_encoding_btf_vars or a pahole before 1.18); BTF's
    # own VARs come first where they exist.
    "runqueues": GlobalType(("struct rq",)),
    "current_task": GlobalType(("struct task_struct *",)),
    "hardirq_stack_ptr": GlobalType(("struct irq_stack *", "void *")),
    "hardirq_stack_inuse": GlobalType(("bool",)),
    "cea_exception_stacks": GlobalType(("struct cea_exception_stacks *",)),
    "cpu_number": GlobalType(("int",)),
    "this_cpu_off": GlobalType(("unsigned long",)),
    "fixed_percpu_data": GlobalType(("struct fixed_percpu_data",)),
    "cpu_tss_rw": GlobalType(("struct tss_struct",)),
    "kernel_cpustat": GlobalType(("struct kernel_cpustat",)),
    "irq_stat": GlobalType(("irq_cpustat_t",)),
    "kstat": GlobalType(("struct kernel_stat",)),
    "cpu_info": GlobalType(("struct cpuinfo_x86",)),
}

#: Constants that kernel BTF does not carry: (value, type, and a check against BTF
#: where BTF can confirm it).  MM_*: ``enum { MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS,
#: MM_SHMEMPAGES, NR_MM_COUNTERS }`` (include/linux/mm_types_task.h), anonymous and
#: used only as array indices; SWP_*: ``enum { SWP_USED = 1 << 0, SWP_WRITEOK = 1 << 1,
#: ... }`` (include/linux/swap.h), likewise anonymous.
MISSING_CONSTANTS: dict[str, tuple[int, str]] = {
    "MM_FILEPAGES": (0, "int"),
    "MM_ANONPAGES": (1, "int"),
    "MM_SWAPENTS": (2, "int"),
    "MM_SHMEMPAGES": (3, "int"),
    "NR_MM_COUNTERS": (4, "int"),
    "SWP_USED": (1 << 0, "int"),
    "SWP_WRITEOK": (1 << 1, "int"),
}


class GlobalsError(BtfError):
    """A hand-typed global disagrees with the dump's BTF or symbols."""


class KernelObjects:
    """The object finder: globals, functions and constants from BTF + kallsyms + the table."""

    def __init__(self, prog: drgn.Program, types: BtfTypes, symbols: KernelSymbols) -> None:
        self.prog = prog
        self.types = types
        self.btf: Btf = types.vmlinux
        self.symbols = symbols
        self._cache: dict[str, drgn.Object | None] = {}
        #: Why a hand-typed global was refused (name -> one line), for ``kdumpkit`` diagnostics.
        self.problems: dict[str, str] = {}

    # --- the drgn callback --------------------------------------------------------------

    def object_finder(
        self, prog: drgn.Program, name: str, flags: drgn.FindObjectFlags, filename: str | None
    ) -> drgn.Object | None:
        """drgn object-finder callback; None on a miss so drgn's own objects still resolve."""
        key = f"{flags.value}:{name}"
        if key in self._cache:
            return self._cache[key]
        found = None
        if flags & drgn.FindObjectFlags.VARIABLE:
            found = self.variable(name)
        if found is None and flags & drgn.FindObjectFlags.FUNCTION:
            found = self.function(name)
        if found is None and flags & drgn.FindObjectFlags.CONSTANT:
            found = self.constant(name)
        self._cache[key] = found
        return found

    # --- variables ----------------------------------------------------------------------

    def variable(self, name: str) -> drgn.Object | None:
        """A global variable as a reference object, typed from BTF VAR or the table."""
        address = self.symbols.address(name)
        if address is None:
            return None
        for type_id in self.btf.ids_by_name(name):
            if self.btf.kind_of(type_id) == Kind.VAR:
                var = self.btf.type(type_id)
                return drgn.Object(self.prog, self.types.type(self.btf, var.ref), address=address)
        if name in GLOBAL_TYPES:
            try:
                return self._hand_typed(name, address)
            except (
                LookupError, SyntaxError, ValueError, TypeError, AttributeError,
                drgn.FaultError, BtfError,
            ) as exc:  # fmt: skip
                self.problems[name] = str(exc)
                return None
        return None

    def _hand_typed(self, name: str, address: int) -> drgn.Object | None:
        entry = GLOBAL_TYPES[name]
        if name == "tk_core":
            return drgn.Object(self.prog, _anonymous_tk_core(self.prog), address=address)
        extent = self._symbol_extent(name, address)
        errors = []
        for spelling in entry.spellings:
            try:
                gtype = self.prog.type(spelling)
            except LookupError as exc:
                errors.append(f"{spelling!r}: {exc}")
                continue
            if gtype.kind == drgn.TypeKind.ARRAY and not gtype.is_complete():
                elem_size = drgn.sizeof(gtype.type)
                length = (entry.length or _length_from_symbol)(
                    self.prog, address, extent, elem_size
                )
                gtype = self.prog.array_type(gtype.type, length, qualifiers=gtype.qualifiers)
            size = drgn.sizeof(gtype) if gtype.is_complete() else 0
            if extent and size > extent:
                errors.append(f"{spelling!r} is {size} bytes but the symbol spans {extent}")
                continue
            return drgn.Object(self.prog, gtype, address=address)
        raise GlobalsError(f"global {name}: no declared type fits ({'; '.join(errors)})")

    def _symbol_extent(self, name: str, address: int) -> int:
        """Bytes from the symbol to the next symbol (0 when unknown)."""
        for symbol in self.symbols.finder(self.prog, name, None, False):
            if symbol.address == address:
                return symbol.size
        return 0

    def check_table(self) -> dict[str, str]:
        """Resolve every hand-typed global present in the dump; returns name -> problem."""
        for name in GLOBAL_TYPES:
            self.variable(name)
        return dict(self.problems)

    # --- functions and constants --------------------------------------------------------

    def function(self, name: str) -> drgn.Object | None:
        """A function, typed from BTF FUNC, at its kallsyms address."""
        address = self.symbols.address(name)
        if address is None:
            return None
        for type_id in self.btf.ids_by_name(name):
            if self.btf.kind_of(type_id) == Kind.FUNC:
                ftype = self.types.type(self.btf, type_id)
                return drgn.Object(self.prog, ftype, address=address)
        return None

    def constant(self, name: str) -> drgn.Object | None:
        """An enumerator from BTF, or one of :data:`MISSING_CONSTANTS`."""
        found = self.btf.enumerator(name)
        if found is not None:
            type_id, value = found
            return drgn.Object(self.prog, self.types.type(self.btf, type_id), value)
        for blob in self.types.blobs[1:]:
            found = blob.enumerator(name)
            if found is not None:
                type_id, value = found
                return drgn.Object(self.prog, self.types.type(blob, type_id), value)
        if name in MISSING_CONSTANTS:
            value, type_name = MISSING_CONSTANTS[name]
            return drgn.Object(self.prog, type_name, value)
        return None
