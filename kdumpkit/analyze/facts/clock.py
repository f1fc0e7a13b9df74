"""Time: HZ, jiffies since boot, uptime and the wall clock at the crash."""

from __future__ import annotations

from typing import TYPE_CHECKING

import drgn

from kdumpkit.analyze.context import program_vmcoreinfo
from kdumpkit.analyze.facts.symbols import read_global_int

if TYPE_CHECKING:
    from drgn import Program

#: The HZ values x86_64 can be built with (CONFIG_HZ_100/250/300/1000).
HZ_CHOICES = (100, 250, 300, 1000)
NSEC_PER_SEC = 1_000_000_000


def initial_jiffies(hz: int) -> int:
    """INITIAL_JIFFIES: jiffies start 5 minutes before they wrap (include/linux/jiffies.h)."""
    return (-300 * hz) & 0xFFFFFFFF


def crash_time(prog: Program) -> int:
    """Wall-clock seconds at the crash: the timekeeper's, else VMCOREINFO's CRASHTIME."""
    try:
        from drgn.helpers.linux.timekeeping import ktime_get_real_seconds

        return int(ktime_get_real_seconds(prog).value_())
    except (LookupError, drgn.FaultError):
        vmcoreinfo = program_vmcoreinfo(prog)
        crashtime = vmcoreinfo.crashtime if vmcoreinfo is not None else None
        if crashtime is None:
            raise
        return crashtime


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
    return round(NSEC_PER_SEC / tick_nsec)


def hz_from_boottime(prog: Program) -> int:
    """The HZ for which ``(jiffies_64 - INITIAL_JIFFIES) / HZ`` is nearest the boot time
    (INITIAL_JIFFIES depends on HZ, so the wrong ones are minutes off)."""
    from drgn.helpers.linux.timekeeping import ktime_get_boottime_seconds

    boot = ktime_get_boottime_seconds(prog).value_()
    jiffies = read_global_int(prog, "jiffies_64", 8)

    def error(hz: int) -> int:
        since_boot = (jiffies - initial_jiffies(hz)) & 0xFFFFFFFFFFFFFFFF
        return int(abs(since_boot // hz - boot))

    return min(HZ_CHOICES, key=error)


def uptime_jiffies(prog: Program) -> tuple[int, int]:
    """(jiffies since boot at the crash, HZ)."""
    hz = jiffies_hz(prog)
    jiffies = read_global_int(prog, "jiffies_64", 8)
    return (jiffies - initial_jiffies(hz)) & 0xFFFFFFFFFFFFFFFF, hz


def uptime_seconds(prog: Program) -> int:
    """Seconds since boot at the crash, from jiffies as crash counts them."""
    try:
        jiffies, hz = uptime_jiffies(prog)
    except (LookupError, ValueError, drgn.FaultError):
        from drgn.helpers.linux.timekeeping import ktime_get_boottime_seconds

        return int(ktime_get_boottime_seconds(prog).value_())
    return jiffies // hz


def boot_seconds(prog: Program) -> int:
    """The wall-clock second of boot as crash counts it for ``log -T``: the crash's
    DATE less the whole seconds of UPTIME (each record then adds its whole seconds)."""
    return crash_time(prog) - uptime_seconds(prog)
