"""How much memory to reserve for the capture kernel on this machine.

Method (every term is printed by ``kdumpkit estimate``):

1. kernel: the capture kernel's bzImage ``init_size`` (memory from its load address
   until it runs; 4x the file size when the header lacks it);
2. initramfs, packed: the file is loaded into the reservation as is;
3. initramfs, unpacked: the kernel unpacks it into a RAM filesystem inside the
   reservation (size from the compressed stream's header, else 3x, see images.py);
4. kernel runtime and early userspace: 64 MiB, kdump-utils' figure (kdumpctl estimate);
5. the collector: 48 MiB for ``kdumpkit collect`` (Python with numpy and the
   compressors measures about 28 MiB resident, plus page buffers);
6. page bitmaps: 2 bits per page of the crashed machine's RAM (which pages exist and
   which to keep), the RHEL kdump guide's rule;
7. CPUs: 2 MiB (per-CPU areas, stacks) per CPU the capture kernel brings up, and
   10 MiB for each compression thread past the first (collect compresses on every CPU it
   has: measured, ``kdumpkit save`` on the 6.1 fixture peaks at 69, 79 and 84 MB with 1, 2
   and 4 threads).  The capture CPUs: ``nr_cpus=`` in ``cmdline_append``, else
   ``[kexec] capture_cpus``, else the online CPUs up to AUTO_CAPTURE_CPUS (load brings up
   fewer when the reservation is smaller than this estimate for them, see plan.py).

The sum gets 10% headroom and is rounded up to 32 MiB.  The range form evaluates the
same sum at the top of each RAM tier, so the value stays right if the same command line
boots a machine with more memory.  The first tier starts at 512 MiB (a 1 GiB VM reports
about 1023 MiB of System RAM, so a ``1G-`` range would reserve nothing there) or higher
when the reservation would leave the first kernel less than 192 MiB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kdumpkit.config import Config
from kdumpkit.service.cmdline import user_nr_cpus
from kdumpkit.service.crashkernel import Crashkernel, GiB, MiB, TiB, ranges_value
from kdumpkit.service.host import Host
from kdumpkit.service.images import (
    InitrdImage,
    KernelImage,
    first_existing,
    initrd_candidates,
    inspect_initrd,
    inspect_kernel,
    kernel_candidates,
)

RUNTIME_BASE = 64 * MiB
COLLECTOR = 48 * MiB
PER_CPU = 2 * MiB
PER_THREAD = 10 * MiB
#: CPUs the capture kernel brings up when nothing says otherwise: two compress a dump
#: in about 0.6x the time of one (bench/capture.py), more gain less
AUTO_CAPTURE_CPUS = 2
#: used when the kernel or initramfs file cannot be found (a Debian cloud 6.1 kernel
#: has init_size 63.6 MiB; its initramfs is about 30 MiB)
ASSUMED_KERNEL = 64 * MiB
ASSUMED_INITRD = 32 * MiB
HEADROOM = 1.10
ROUND = 32 * MiB
#: tier ends for the range form; the open tier is sized for 4 TiB
TIERS: tuple[int | None, ...] = (2 * GiB, 64 * GiB, 1 * TiB, None)
OPEN_TIER_RAM = 4 * TiB
MIN_FIRST_TIER = 512 * MiB
KEEP_FOR_FIRST_KERNEL = 192 * MiB


@dataclass
class Estimate:
    """The reservation this machine needs, with the terms it is made of."""

    system_ram: int
    ram_source: str
    cpus: int
    capture_cpus: int
    kernel: KernelImage | None
    initrd: InitrdImage | None
    terms: list[tuple[str, int]] = field(default_factory=list)
    size: int = 0
    value: Crashkernel | None = None


def _round_up(size: float, step: int) -> int:
    return int(-(-size // step) * step)


def reservation_terms(
    system_ram: int, kernel_bytes: int, initrd_packed: int, initrd_unpacked: int, capture_cpus: int
) -> list[tuple[str, int]]:
    """The terms of the method above, as (label, bytes)."""
    return [
        ("capture kernel (bzImage init_size)", kernel_bytes),
        ("initramfs as loaded", initrd_packed),
        ("initramfs unpacked", initrd_unpacked),
        ("kernel runtime and early userspace", RUNTIME_BASE),
        ("kdumpkit collect (Python, buffers)", COLLECTOR),
        ("page bitmaps (2 bits per page of RAM)", system_ram // 4096 // 4),
        (
            f"per-CPU memory ({capture_cpus} CPU{'s' if capture_cpus != 1 else ''})",
            capture_cpus * PER_CPU,
        ),
        (
            f"compression threads past the first ({capture_cpus - 1})",
            (capture_cpus - 1) * PER_THREAD,
        ),
    ]


def wanted_capture_cpus(host: Host, config: Config) -> int:
    """The CPUs the capture kernel should bring up, before the reservation is considered:
    the user's ``nr_cpus=`` append, else ``[kexec] capture_cpus``, else the online CPUs up to
    AUTO_CAPTURE_CPUS; never more than are online."""
    cpus = host.online_cpus()
    wanted = user_nr_cpus(config.cmdline_append) or config.capture_cpus
    return min(cpus, wanted or AUTO_CAPTURE_CPUS)


def reservation_size(terms: list[tuple[str, int]]) -> int:
    """The sum of *terms* with headroom, rounded up to 32 MiB."""
    return _round_up(sum(size for _, size in terms) * HEADROOM, ROUND)


def estimate_machine(
    host: Host,
    config: Config,
    kernel: str | None = None,
    initrd: str | None = None,
    capture_cpus: int | None = None,
) -> Estimate:
    """Estimate the reservation for the machine seen through *host* (with *capture_cpus*
    CPUs in the capture kernel; default: :func:`wanted_capture_cpus`)."""
    system_ram, ram_source = host.system_ram()
    cpus = host.online_cpus()
    capture_cpus = capture_cpus or wanted_capture_cpus(host, config)

    kernel_path = first_existing(host, kernel_candidates(host, config, kernel))
    initrd_path = first_existing(host, initrd_candidates(host, config, initrd))
    kernel_image = initrd_image = None
    try:
        if kernel_path:
            kernel_image = inspect_kernel(str(host.path(kernel_path)), kernel_path)
    except OSError:
        kernel_image = None
    try:
        if initrd_path:
            initrd_image = inspect_initrd(str(host.path(initrd_path)), initrd_path)
    except OSError:
        initrd_image = None

    kernel_bytes = kernel_image.memory_needed if kernel_image else ASSUMED_KERNEL
    packed = initrd_image.file_size if initrd_image else ASSUMED_INITRD
    unpacked = initrd_image.unpacked_size if initrd_image else 3 * ASSUMED_INITRD

    def size_for(ram: int) -> int:
        return reservation_size(
            reservation_terms(ram, kernel_bytes, packed, unpacked, capture_cpus)
        )

    terms = reservation_terms(system_ram, kernel_bytes, packed, unpacked, capture_cpus)
    size = reservation_size(terms)
    tier_sizes = {end: size_for(end if end is not None else OPEN_TIER_RAM) for end in TIERS}
    first_size = next(iter(tier_sizes.values()))
    floor = max(MIN_FIRST_TIER, _round_up(first_size + KEEP_FOR_FIRST_KERNEL, 128 * MiB))
    tier_sizes = {end: s for end, s in tier_sizes.items() if end is None or end > floor}
    return Estimate(
        system_ram,
        ram_source,
        cpus,
        capture_cpus,
        kernel_image,
        initrd_image,
        terms,
        size,
        ranges_value(tier_sizes, floor),
    )
