"""The system as ``sys`` summarises it: names, CPUs, clock, load, memory, panic."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import drgn

from kdumpkit.analyze.context import dump_path, program_dump, vmlinux_path
from kdumpkit.analyze.facts.clock import crash_time, uptime_seconds
from kdumpkit.analyze.facts.memory import memory_bytes
from kdumpkit.analyze.facts.symbols import read_global_int
from kdumpkit.analyze.facts.tasks import for_each_task_with_idle

if TYPE_CHECKING:
    from drgn import Program

FSHIFT = 11  # include/linux/sched/loadavg.h
FIXED_1 = 1 << FSHIFT
UTSNAME_FIELDS = ("sysname", "nodename", "release", "version", "machine")


@dataclass
class SystemInfo:
    """Every ``sys`` field as data."""

    #: the vmlinux given, or None (types from BTF, symbols from kallsyms)
    kernel: str | None
    tainted: bool
    dumpfile: str | None
    #: "PARTIAL DUMP" (filtered), "INCOMPLETE" (truncated) or None
    dump_flags: str | None
    cpus: int
    offline_cpus: int
    #: wall-clock seconds at the crash
    timestamp: int
    uptime_seconds: int
    #: avenrun[] as /proc/loadavg rounds it: "0.00, 0.01, 0.05"
    load_average: str
    tasks: int
    nodename: str
    release: str
    version: str
    machine: str
    mhz: int | None
    memory_bytes: int
    panic: str | None

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON-ready data."""
        return asdict(self)


def dump_flags(prog: Program) -> str | None:
    """``PARTIAL DUMP`` for a filtered dump, ``INCOMPLETE`` for a truncated one."""
    dump = program_dump(prog)
    if dump is None:
        return None
    if dump.header.incomplete:
        return "INCOMPLETE"
    if dump.header.dump_level:
        return "PARTIAL DUMP"
    return None


def load_average(prog: Program) -> str:
    """avenrun[] as /proc/loadavg rounds it (fixed point, FSHIFT bits)."""
    address = prog.symbol("avenrun").address
    parts = []
    for index in range(3):
        value = prog.read_u64(address + 8 * index) + FIXED_1 // 200
        frac = ((value & (FIXED_1 - 1)) * 100) >> FSHIFT
        parts.append(f"{value >> FSHIFT}.{frac:02d}")
    return ", ".join(parts)


def cpu_mhz(prog: Program) -> int | None:
    """The CPU clock from cpu_khz (x86)."""
    try:
        return read_global_int(prog, "cpu_khz", 4) // 1000
    except (LookupError, drgn.FaultError):
        return None


def utsname(prog: Program) -> dict[str, str]:
    """init_uts_ns's fields."""
    name = prog["init_uts_ns"].name
    return {
        field: getattr(name, field).string_().decode("utf-8", "replace") for field in UTSNAME_FIELDS
    }


def panic_string(prog: Program) -> str | None:
    """The panic message from the log, as crash finds it."""
    from drgn.helpers.linux.panic import panic_message

    message = panic_message(prog)
    return message.decode("utf-8", "replace") if message is not None else None


def tainted(prog: Program) -> bool:
    """Whether the kernel was tainted."""
    try:
        return bool(prog["tainted_mask"].value_())
    except LookupError:
        return False


def system_info(prog: Program) -> SystemInfo:
    """Every ``sys`` field."""
    from drgn.helpers.linux.cpumask import num_online_cpus, num_present_cpus

    uts = utsname(prog)
    present = num_present_cpus(prog)
    return SystemInfo(
        kernel=vmlinux_path(prog),
        tainted=tainted(prog),
        dumpfile=dump_path(prog),
        dump_flags=dump_flags(prog),
        cpus=present,
        offline_cpus=present - num_online_cpus(prog),
        timestamp=crash_time(prog),
        uptime_seconds=uptime_seconds(prog),
        load_average=load_average(prog),
        tasks=sum(1 for _ in for_each_task_with_idle(prog)),
        nodename=uts["nodename"],
        release=uts["release"],
        version=uts["version"],
        machine=uts["machine"],
        mhz=cpu_mhz(prog),
        memory_bytes=memory_bytes(prog),
        panic=panic_string(prog),
    )
