"""``sys``: the system summary crash prints at start-up and on demand."""

from __future__ import annotations

import argparse
import datetime
import os
from typing import TYPE_CHECKING, Any

import drgn

from kdumpkit.analyze.commands.base import Command, Result, register
from kdumpkit.analyze.commands.common import (
    for_each_task_with_idle,
    panic_task,
    read_global_int,
    size_text,
    task_comm,
)

if TYPE_CHECKING:
    from drgn import Object, Program

FSHIFT = 11  # include/linux/sched/loadavg.h
FIXED_1 = 1 << FSHIFT
GIGABYTE = 1 << 30
#: crash reports memory as the next whole gigabyte when it is this close to it
ROUND_UP_SLACK = 64 << 20


def dump_path(prog: Program) -> str | None:
    """The dump file's name as the user gave it."""
    path = prog.cache.get("kdumpkit.path")
    if path:
        return os.fspath(path)
    dump = prog.cache.get("kdumpkit.dump")
    return getattr(dump, "name", None) if dump is not None else None


def vmlinux_path(prog: Program) -> str | None:
    """The vmlinux given for types, if one was."""
    path = prog.cache.get("kdumpkit.vmlinux")
    if path:
        return os.fspath(path)
    try:
        return prog.main_module().debug_file_path
    except LookupError:
        return None


def dump_flags(prog: Program) -> str:
    """``  [PARTIAL DUMP]`` for a filtered dump, ``  [INCOMPLETE]`` for a truncated one."""
    dump = prog.cache.get("kdumpkit.dump")
    if dump is None:
        return ""
    header = dump.header
    if header.incomplete:
        return "  [INCOMPLETE]"
    if header.dump_level:
        return "  [PARTIAL DUMP]"
    return ""


def load_average(prog: Program) -> str:
    """avenrun[] as /proc/loadavg rounds it (fixed point, FSHIFT bits)."""
    address = prog.symbol("avenrun").address
    parts = []
    for index in range(3):
        value = prog.read_u64(address + 8 * index) + FIXED_1 // 200
        frac = ((value & (FIXED_1 - 1)) * 100) >> FSHIFT
        parts.append(f"{value >> FSHIFT}.{frac:02d}")
    return ", ".join(parts)


def crash_time(prog: Program) -> int:
    """Wall-clock seconds at the crash: the timekeeper's, else VMCOREINFO's CRASHTIME."""
    try:
        from drgn.helpers.linux.timekeeping import ktime_get_real_seconds

        return ktime_get_real_seconds(prog).value_()
    except (LookupError, drgn.FaultError):
        dump = prog.cache.get("kdumpkit.dump")
        crashtime = dump.vmcoreinfo.crashtime if dump is not None else None
        if crashtime is None:
            raise
        return crashtime


def date_text(timestamp: int) -> str:
    """``Thu Nov 26 08:41:23 UTC 2026``."""
    when = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return when.strftime("%a %b %e %H:%M:%S UTC %Y")


#: The HZ values x86_64 can be built with (CONFIG_HZ_100/250/300/1000).
HZ_CHOICES = (100, 250, 300, 1000)


def jiffies_hz(prog: Program) -> int:
    """HZ, from tick_nsec (NSEC_PER_SEC / HZ, adjusted slightly by NTP); without it
    (Debian's 7.3.4 has no tick_nsec), the HZ whose jiffies since boot best match
    the timekeeper's boot time."""
    try:
        tick_nsec = read_global_int(prog, "tick_nsec", 8)
    except LookupError:
        return hz_from_boottime(prog)
    if not tick_nsec:
        raise ValueError("tick_nsec is 0")
    return round(1_000_000_000 / tick_nsec)


def hz_from_boottime(prog: Program) -> int:
    """The HZ for which ``(jiffies_64 - INITIAL_JIFFIES) / HZ`` is nearest the boot time
    (INITIAL_JIFFIES depends on HZ, so the wrong ones are minutes off)."""
    from drgn.helpers.linux.timekeeping import ktime_get_boottime_seconds

    boot = ktime_get_boottime_seconds(prog).value_()
    jiffies = read_global_int(prog, "jiffies_64", 8)

    def error(hz: int) -> int:
        since_boot = (jiffies - ((-300 * hz) & 0xFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
        return abs(since_boot // hz - boot)

    return min(HZ_CHOICES, key=error)


def uptime_jiffies(prog: Program) -> tuple[int, int]:
    """(jiffies since boot at the crash, HZ)."""
    hz = jiffies_hz(prog)
    jiffies = read_global_int(prog, "jiffies_64", 8)
    # INITIAL_JIFFIES: jiffies start 5 minutes before they wrap (include/linux/jiffies.h).
    initial = (-300 * hz) & 0xFFFFFFFF
    return (jiffies - initial) & 0xFFFFFFFFFFFFFFFF, hz


def uptime_seconds(prog: Program) -> int:
    """Seconds since boot at the crash, from jiffies as crash counts them."""
    try:
        jiffies, hz = uptime_jiffies(prog)
    except (LookupError, ValueError, drgn.FaultError):
        from drgn.helpers.linux.timekeeping import ktime_get_boottime_seconds

        return ktime_get_boottime_seconds(prog).value_()
    return jiffies // hz


def uptime_text(seconds: int) -> str:
    """``00:00:05`` or ``3 days, 01:02:03``."""
    days, rest = divmod(int(seconds), 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days} days, {text}" if days else text


def memory_bytes(prog: Program) -> int:
    """RAM present in the machine: the nodes' present pages, as crash totals them."""
    from drgn.helpers.linux.mmzone import for_each_online_pgdat

    pages = sum(pgdat.node_present_pages.value_() for pgdat in for_each_online_pgdat(prog))
    return pages * prog["PAGE_SIZE"].value_()


def memory_text(total: int) -> str:
    """crash rounds a total just under a gigabyte boundary up to it."""
    next_gig = -(-total // GIGABYTE) * GIGABYTE
    if next_gig - total <= ROUND_UP_SLACK:
        total = next_gig
    return size_text(total)


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
        field: getattr(name, field).string_().decode("utf-8", "replace")
        for field in ("sysname", "nodename", "release", "version", "machine")
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


def system_info(prog: Program) -> dict[str, Any]:
    """Every ``sys`` field as data."""
    from drgn.helpers.linux.cpumask import num_online_cpus, num_present_cpus

    uts = utsname(prog)
    timestamp = crash_time(prog)
    present = num_present_cpus(prog)
    return {
        "kernel": vmlinux_path(prog),
        "tainted": tainted(prog),
        "dumpfile": dump_path(prog),
        "dump_flags": dump_flags(prog).strip(" []") or None,
        "cpus": present,
        "offline_cpus": present - num_online_cpus(prog),
        "timestamp": timestamp,
        "date": date_text(timestamp),
        "uptime_seconds": uptime_seconds(prog),
        "load_average": load_average(prog),
        "tasks": sum(1 for _ in for_each_task_with_idle(prog)),
        "nodename": uts["nodename"],
        "release": uts["release"],
        "version": uts["version"],
        "machine": uts["machine"],
        "mhz": cpu_mhz(prog),
        "memory_bytes": memory_bytes(prog),
        "panic": panic_string(prog),
    }


def render_sys(prog: Program, info: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs in crash's order."""
    kernel = info["kernel"] or "(none: types from BTF, symbols from kallsyms)"
    if info["tainted"]:
        kernel += "  [TAINTED]"
    cpus = str(info["cpus"])
    if info["offline_cpus"]:
        cpus += f" [OFFLINE: {info['offline_cpus']}]"
    machine = info["machine"]
    if info["mhz"]:
        machine += f"  ({info['mhz']} Mhz)"
    elif info["machine"] == "aarch64":
        machine += "  (unknown Mhz)"  # crash 9.0.2 reads no clock rate from an arm64 dump
    pairs = [
        ("KERNEL", kernel),
        ("DUMPFILE", (info["dumpfile"] or "") + dump_flags(prog)),
        ("CPUS", cpus),
        ("DATE", info["date"]),
        ("UPTIME", uptime_text(info["uptime_seconds"])),
        ("LOAD AVERAGE", info["load_average"]),
        ("TASKS", str(info["tasks"])),
        ("NODENAME", info["nodename"]),
        ("RELEASE", info["release"]),
        ("VERSION", info["version"]),
        ("MACHINE", machine),
        ("MEMORY", memory_text(info["memory_bytes"])),
    ]
    if info["panic"] is not None:
        pairs.append(("PANIC", f'"{info["panic"]}"'))
    return pairs


def context_pairs(task: Object, state: str) -> list[tuple[str, str]]:
    """crash's task context block: PID, COMMAND, TASK, CPU, STATE."""
    from drgn.helpers.linux.sched import task_cpu, task_thread_info

    address = task.value_()
    try:
        thread_info = task_thread_info(task).value_()
    except LookupError:
        thread_info = address
    return [
        ("PID", str(task.pid.value_())),
        ("COMMAND", f'"{task_comm(task)}"'),
        ("TASK", f"{address:x}  [THREAD_INFO: {thread_info:x}]"),
        ("CPU", str(task_cpu(task))),
        ("STATE", state),
    ]


def panic_context(prog: Program) -> list[tuple[str, str]]:
    """The start-up banner's panic-task block."""
    task = panic_task(prog)
    if task is None:
        return []
    from kdumpkit.analyze.commands.task import state_name

    return context_pairs(task, state_name(task))


def format_pairs(pairs: list[tuple[str, str]]) -> str:
    """Labels right-aligned to crash's 12 columns, then ``: value``."""
    return "".join(f"{label:>12}: {value}\n" for label, value in pairs)


@register
class Sys(Command):
    """crash's ``sys`` (and ``sys -t``, ``sys config``)."""

    name = "sys"
    help = "system data"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-t", dest="taint", action="store_true", help="taint flags")
        parser.add_argument(
            "config",
            nargs="?",
            choices=("config",),
            help="the kernel's build configuration (CONFIG_IKCONFIG)",
        )

    def run(self, prog: Program, args: argparse.Namespace) -> Result:
        if args.config:
            from drgn.helpers.linux.kconfig import get_kconfig

            config = get_kconfig(prog)
            return Result("".join(f"{k}={v}\n" for k, v in config.items()), [dict(config)])
        if args.taint:
            from kdumpkit.analyze.report import taint_info

            taint = taint_info(prog)
            return Result(f"TAINTED_MASK: {taint['mask']:x}  {taint['letters']}\n", [taint])
        info = system_info(prog)
        return Result(format_pairs(render_sys(prog, info)), [info])
