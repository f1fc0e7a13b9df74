"""crashkernel= parsing and producing, the capture command line, kernel/initramfs sizing."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracles import ORACLE, built_release, missing_input
from service_machine import MiB, bzimage, initramfs, newc_cpio

from kdumpkit.errors import KdumpkitError
from kdumpkit.service.cmdline import capture_cmdline, split_cmdline
from kdumpkit.service.crashkernel import (
    Crashkernel,
    GiB,
    MemRange,
    effective_crashkernel,
    format_size,
    memparse,
    parse_crashkernel,
)
from kdumpkit.service.errors import CrashkernelError
from kdumpkit.service.images import inspect_initrd, inspect_kernel

ROOT = Path(__file__).resolve().parent.parent


def test_plain_size_and_offset() -> None:
    value = parse_crashkernel("256M")
    assert value.plain and value.size_for(64 * GiB) == 256 * MiB and str(value) == "256M"
    value = parse_crashkernel("crashkernel=128M@16M")
    assert (value.ranges[0].size, value.offset, str(value)) == (128 * MiB, 16 * MiB, "128M@16M")


def test_range_syntax_picks_by_ram_with_exclusive_end() -> None:
    value = parse_crashkernel("1G-4G:192M,4G-64G:256M,64G-:512M")
    assert value.ranges == (
        MemRange(GiB, 4 * GiB, 192 * MiB),
        MemRange(4 * GiB, 64 * GiB, 256 * MiB),
        MemRange(64 * GiB, None, 512 * MiB),
    )
    assert value.size_for(1023 * MiB) == 0  # a "1 GiB" VM has 1023 MiB: no match
    assert value.size_for(GiB) == 192 * MiB
    assert value.size_for(4 * GiB - 1) == 192 * MiB
    assert value.size_for(4 * GiB) == 256 * MiB  # end is exclusive
    assert value.size_for(2 << 40) == 512 * MiB
    assert str(value) == "1G-4G:192M,4G-64G:256M,64G-:512M"


def test_suffixes_and_offset_with_ranges() -> None:
    assert parse_crashkernel("512M,high").suffix == "high"
    low = parse_crashkernel("0,low")
    assert (low.suffix, low.ranges[0].size) == ("low", 0)
    value = parse_crashkernel("1G-4G:192M,4G-64G:256M,high")
    assert value.suffix == "high" and value.size_for(8 * GiB) == 256 * MiB
    value = parse_crashkernel("512M-2G:64M,2G-:128M@16M")
    assert (value.offset, str(value)) == (16 * MiB, "512M-2G:64M,2G-:128M@16M")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "has no value"),
        ("auto", "RHEL 8 extension"),
        ("lots", "expected a size"),
        ("1G:64M", "'-' expected"),
        ("4G-1G:64M", "end <= start"),
        ("1G-4G", "unexpected '-4G' after the size"),
        ("1G-4G:", "expected a size"),
        ("256Mb", "unexpected 'b'"),
        ("1G-:64M,low", "takes a plain size"),
        ("high", "no size before ,high"),
        ("256M@", "expected a size"),
    ],
)
def test_invalid_values_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(CrashkernelError, match=message) as info:
        parse_crashkernel(text)
    assert isinstance(info.value, KdumpkitError) and "\n" not in str(info.value)


def test_size_not_below_ram_reserves_nothing() -> None:
    # parse_crashkernel_mem() rejects a size >= the System RAM total
    assert parse_crashkernel("0-:2G").size_for(GiB) == 0


def test_memparse_is_base_zero_like_the_kernel() -> None:
    assert memparse("0x100000") == (1 << 20, "")
    assert memparse("010M") == (8 * MiB, "")
    assert memparse("64k,") == (64 << 10, ",")
    assert format_size(4096 << 10) == "4M" and format_size(17) == "17"


def test_effective_option_follows_the_kernel() -> None:
    assert effective_crashkernel("quiet") is None
    assert str(effective_crashkernel("crashkernel=128M crashkernel=256M")) == "256M"
    # a plain crashkernel=X wins over ,high; ,low only adds to a main reservation
    assert str(effective_crashkernel("crashkernel=1G,high crashkernel=256M")) == "256M"
    assert str(effective_crashkernel("crashkernel=512M,high crashkernel=128M,low")) == "512M,high"
    assert effective_crashkernel("crashkernel=128M,low") is None


sizes = st.integers(1, 4096).map(lambda n: n * MiB)


@given(st.lists(st.tuples(sizes, sizes), min_size=1, max_size=5), st.booleans())
def test_produced_ranges_parse_back(steps: list[tuple[int, int]], open_end: bool) -> None:
    ranges, start = [], 0
    for width, size in steps:
        ranges.append(MemRange(start, start + width, size))
        start += width
    if open_end:
        ranges[-1] = MemRange(ranges[-1].start, None, ranges[-1].size)
    value = Crashkernel(tuple(ranges))
    assert parse_crashkernel(str(value)) == value


def test_capture_cmdline_drops_and_appends() -> None:
    running = (
        "BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro quiet crashkernel=1G-:256M "
        'hugepages=512 default-hugepagesz=1G nr_cpus=8 dyndbg="file kexec.c +p" '
        "console=tty0 console=ttyS0 -- single"
    )
    result = capture_cmdline(running, remove=("quiet", "console=tty0"), append="panic=10")
    assert result == (
        'BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro dyndbg="file kexec.c +p" '
        "console=ttyS0 irqpoll nr_cpus=1 reset_devices panic=10"
    )
    assert split_cmdline('a="b c" d') == ['a="b c"', "d"]
    with_unit = capture_cmdline(
        "root=/dev/sda systemd.unit=rescue.target",
        (),
        "",
        ["systemd.unit=kdumpkit-collect.service"],
    )
    assert with_unit.endswith("reset_devices systemd.unit=kdumpkit-collect.service")
    assert "rescue" not in with_unit


def test_synthetic_bzimage(tmp_path: Path) -> None:
    path = tmp_path / "vmlinuz"
    path.write_bytes(bzimage(60 * MiB, signed=True))
    kernel = inspect_kernel(str(path))
    assert (kernel.bzimage, kernel.file_loadable, kernel.signed) == (True, True, True)
    assert kernel.memory_needed == 60 * MiB
    path.write_bytes(bzimage(60 * MiB, signed=False))
    assert not inspect_kernel(str(path)).signed
    path.write_bytes(b"\x7fELF" + bytes(4096))
    elf = inspect_kernel(str(path))
    assert not elf.bzimage and not elf.file_loadable and elf.memory_needed == 4 * 4100


def test_real_debian_kernel() -> None:
    """Debian's 6.1 kernel, the release the testbed fetched (python3 testbed/build.py)."""
    release = built_release("6.1")
    path = ORACLE / "kernels" / release / "boot" / f"vmlinuz-{release}"
    if not path.exists():
        missing_input(f"{path}", "python3 testbed/build.py --kernels 6.1")
    kernel = inspect_kernel(str(path))
    # Debian's kernels are signed for Secure Boot; boot protocol 2.15, 64-bit entry
    assert kernel.file_loadable and kernel.signed and kernel.protocol == 0x20F
    assert 32 * MiB < kernel.init_size < 128 * MiB


def test_initramfs_unpacked_size_is_exact_for_gzip(tmp_path: Path) -> None:
    data, unpacked = initramfs()
    path = tmp_path / "initrd.img"
    path.write_bytes(data)
    image = inspect_initrd(str(path))
    assert (image.file_size, image.unpacked_size) == (len(data), unpacked)
    assert image.how == "gzip, size from its header"


def test_initramfs_without_stated_size_uses_ratio(tmp_path: Path) -> None:
    path = tmp_path / "initrd.img"
    path.write_bytes(b"\xfd7zXZ\x00" + bytes(1000))
    image = inspect_initrd(str(path))
    assert image.unpacked_size == 3 * 1006 and "assumed 3x" in image.how
    plain = newc_cpio({"a": b"x" * 100})
    path.write_bytes(plain + bytes(3 << 20))  # long zero padding is skipped quickly
    assert inspect_initrd(str(path)).unpacked_size == len(plain)
    main = newc_cpio({"b": b"y" * 1000})
    path.write_bytes(plain + bytes(512) + gzip.compress(main))
    assert inspect_initrd(str(path)).unpacked_size == len(plain) + len(main)


def test_capture_cmdline_user_overrides_and_repeats() -> None:
    # the testbed appends the capture parameters itself: no doubles
    assert (
        capture_cmdline(
            "console=ttyS0 crashkernel=256M panic=5",
            append="console=ttyS0 irqpoll nr_cpus=1 reset_devices panic=1",
        )
        == "panic=5 console=ttyS0 irqpoll nr_cpus=1 reset_devices panic=1"
    )
    assert (
        capture_cmdline("root=/dev/sda", append="nr_cpus=2")
        == "root=/dev/sda irqpoll reset_devices nr_cpus=2"
    )
