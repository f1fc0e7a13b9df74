"""service/ on arm64: Debian's arm64 vmlinuz (a plain Image that is also a signed EFI
binary) is recognised as what kexec_file_load's arm64 loader takes; the syscall number."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from arm64_fixtures import KVER_6_1, KVER_6_12, TESTBED

from kdumpkit.service.images import inspect_kernel
from kdumpkit.service.kexec import SYSCALL_KEXEC_FILE_LOAD


@pytest.mark.parametrize("kver", [KVER_6_1, KVER_6_12])
def test_debian_arm64_vmlinuz_is_a_signed_image(kver: str) -> None:
    path = TESTBED / "arm64/kernels" / kver / "boot" / f"vmlinuz-{kver}"
    if not path.exists():
        pytest.skip(f"{path} not fetched (testbed/arm64/10-fetch-kernels.sh)")
    image = inspect_kernel(str(path))
    header = path.read_bytes()[:0x40]
    assert header[:2] == b"MZ" and header[0x38:0x3C] == b"ARMd"
    assert image.arm64_image and image.file_loadable and image.signed and not image.bzimage
    assert image.kind == "arm64 Image"
    (image_size,) = struct.unpack_from("<Q", header, 0x10)
    assert image.memory_needed == image_size > image.file_size


def test_big_endian_image_is_not_taken(tmp_path: Path) -> None:
    header = bytearray(0x40)
    struct.pack_into("<QQ", header, 0x10, 1 << 25, 1)  # flags bit 0: big-endian
    header[0x38:0x3C] = b"ARMd"
    path = tmp_path / "Image"
    path.write_bytes(bytes(header) + bytes(4096))
    image = inspect_kernel(str(path))
    assert not image.arm64_image and not image.file_loadable


def test_kexec_file_load_number() -> None:
    assert SYSCALL_KEXEC_FILE_LOAD["aarch64"] == 294


def test_check_wants_frame_pointers_not_orc_on_arm64(tmp_path: Path) -> None:
    """Debian's arm64 kernel config, on a simulated machine: FRAME_POINTER is what the
    analysis needs there, and KEXEC_FILE's absence is told (kexec -p still loads)."""
    config = TESTBED / "arm64/kernels" / KVER_6_1 / "boot" / f"config-{KVER_6_1}"
    if not config.exists():
        pytest.skip(f"{config} not fetched (testbed/arm64/10-fetch-kernels.sh)")
    from service_machine import Machine

    from kdumpkit.service.checks import check_kernel_config
    from kdumpkit.service.host import Host

    root = Machine(kernel_config=config.read_text()).build(tmp_path)
    findings = {f.item: f for f in check_kernel_config(Host(str(root)))}
    assert findings["CONFIG_FRAME_POINTER"].status == "OK"
    assert "CONFIG_UNWINDER_ORC" not in findings
    assert findings["CONFIG_KEXEC_FILE"].status == "WARN"
