"""The kernel log: byte-identical to makedumpfile --dump-dmesg on the real dump, in every format;
corrupt metadata and the 3.5–5.9 record layout on patched memory."""

from __future__ import annotations

import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kdumpkit.dump.base import Dump, PageState
from kdumpkit.dump.open import open_dump
from kdumpkit.dump.vmcoreinfo import VmcoreInfo
from kdumpkit.kernel.printk import PrintkError, get_printk_records, render_dmesg
from kdumpkit.kernel.x86_64 import address_space

FORMATS = ["elf61", "kdump61", "flat61"]


@pytest.fixture(params=FORMATS)
def dump_path(request: pytest.FixtureRequest) -> Path:
    path: Path = request.getfixturevalue(request.param)
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


@pytest.mark.parametrize(
    ("caller_id", "reference"), [(False, "dump-dmesg.txt"), (True, "dump-dmesg-1.7.8.txt")]
)
def test_byte_identical_to_makedumpfile(dump_path: Path, fx61: Path, caller_id, reference) -> None:
    expected = (fx61 / "makedumpfile" / reference).read_bytes()
    with open_dump(dump_path) as dump:
        started = time.perf_counter()
        records = get_printk_records(dump)
        assert time.perf_counter() - started < 2
    assert render_dmesg(records, caller_id=caller_id) == expected


def test_records_carry_fields(elf61: Path, fx61: Path) -> None:
    with open_dump(elf61) as dump:
        records = get_printk_records(dump)
    assert [r.seq for r in records] == list(range(records[0].seq, records[0].seq + len(records)))
    assert records[0].text.startswith(b"Linux version 6.1.0-56-cloud-amd64")
    assert records[0].caller == "T0"
    marker = [r for r in records if b"TESTBED marker: hello from 6.1.0-56-cloud-amd64" in r.text]
    assert len(marker) == 1
    # The Oops lines are KERN_EMERG..KERN_WARNING; dev_printk records carry their dictionary.
    assert {r.level for r in records} <= set(range(8)) and len({r.level for r in records}) > 1
    pci = [r for r in records if r.dict.get("SUBSYSTEM") == "pci"]
    assert pci and all(r.dict["DEVICE"].startswith("+pci:") for r in pci)
    # The testbed wrote its TESTBED lines through /dev/kmsg: facility LOG_USER (1), caller T1.
    user = [r for r in records if r.facility != 0]
    assert user and all(r.text.startswith(b"TESTBED") and r.facility == 1 for r in user)
    assert all(r.caller == "T1" for r in user) and marker[0] in user


def test_cli_writes_file_and_stdout(kdump61: Path, fx61: Path, tmp_path: Path) -> None:
    out = tmp_path / "dmesg.txt"
    cmd = [sys.executable, "-m", "kdumpkit", "dmesg"]
    done = subprocess.run([*cmd, "--no-caller-id", str(kdump61), str(out)], capture_output=True)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == (fx61 / "makedumpfile" / "dump-dmesg.txt").read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["dmesg.txt"]  # no temporary left behind
    done = subprocess.run([*cmd, str(kdump61)], capture_output=True)
    assert done.stdout == (fx61 / "makedumpfile" / "dump-dmesg-1.7.8.txt").read_bytes()


def test_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "notadump"
    bad.write_bytes(b"hello" * 100)
    done = subprocess.run(
        [sys.executable, "-m", "kdumpkit", "dmesg", str(bad)], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "not a crash dump" in done.stderr


# --- patched memory ------------------------------------------------------------------------------


class PatchedDump(Dump):
    """A real dump with some physical bytes replaced, and optionally another VMCOREINFO."""

    def __init__(self, base: Dump, vmcoreinfo: VmcoreInfo | None = None) -> None:
        self.base = base
        self.name = base.name
        self.header = base.header
        self.notes, self.note_data = base.notes, base.note_data
        self.vmcoreinfo = vmcoreinfo or base.vmcoreinfo
        self.prstatus = base.prstatus
        self.patches: dict[int, bytes] = {}

    def patch(self, paddr: int, data: bytes) -> None:
        for i, byte in enumerate(data):
            pfn, off = divmod(paddr + i, self.page_size)
            page = bytearray(self.patches.get(pfn) or self.base.read_page(pfn, zero_missing=True))
            page[off] = byte
            self.patches[pfn] = bytes(page)

    def page_state(self, pfn: int) -> PageState:
        return PageState.PRESENT if pfn in self.patches else self.base.page_state(pfn)

    def _read_present_page(self, pfn: int) -> bytes:
        return self.patches.get(pfn) or self.base.read_page(pfn)

    def present_bitmap(self) -> np.ndarray:
        return self.base.present_bitmap()


def _prb_paddr(dump: Dump) -> int:
    space = address_space(dump)
    return space.v2p(space.read_u64(dump.vmcoreinfo.symbol("prb")))


def test_corrupt_count_bits_is_one_line_error(elf61: Path) -> None:
    with open_dump(elf61) as base:
        dump = PatchedDump(base)
        info = dump.vmcoreinfo
        dump.patch(
            _prb_paddr(dump) + info.offset("prb_desc_ring.count_bits"), struct.pack("<I", 61)
        )
        with pytest.raises(PrintkError, match="corrupt") as exc:
            get_printk_records(dump)
    assert "\n" not in str(exc.value)


def test_corrupt_tail_id_does_not_loop(elf61: Path) -> None:
    with open_dump(elf61) as base:
        dump = PatchedDump(base)
        info = dump.vmcoreinfo
        tail = _prb_paddr(dump) + info.offset("printk_ringbuffer.desc_ring")
        tail += info.offset("prb_desc_ring.tail_id")
        # head + 1: makedumpfile would walk 2^62 ids to get back to head.
        head = address_space(dump).dump.read(tail - 8, 8)
        dump.patch(tail, struct.pack("<Q", int.from_bytes(head, "little") + 1))
        started = time.perf_counter()
        with pytest.raises(PrintkError, match="corrupt"):
            get_printk_records(dump)
        assert time.perf_counter() - started < 2


def test_garbage_descriptors_give_records_or_nothing(elf61: Path) -> None:
    with open_dump(elf61) as base:
        dump = PatchedDump(base)
        space = address_space(dump)
        info = dump.vmcoreinfo
        prb = space.read(space.read_u64(info.symbol("prb")), info.size("printk_ringbuffer"))
        descs = int.from_bytes(prb[info.offset("prb_desc_ring.descs") :][:8], "little")
        rng = np.random.default_rng(7)
        dump.patch(space.v2p(descs), rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
        records = get_printk_records(dump)
    assert 0 < len(records) < 419  # the overwritten descriptors are skipped, the rest read


def _old_vmcoreinfo(real: VmcoreInfo, log_vars: int) -> VmcoreInfo:
    """The real VMCOREINFO with the printk keys of a 3.11–5.9 kernel instead of prb's."""
    lines = [
        line
        for line in real.text.splitlines()
        if not any(k in line for k in ("prb", "printk", "latched_seq", "clear_seq", "atomic_long"))
    ]
    lines += [
        f"SYMBOL(log_buf)={log_vars:x}",
        f"SYMBOL(log_buf_len)={log_vars + 8:x}",
        f"SYMBOL(log_first_idx)={log_vars + 12:x}",
        f"SYMBOL(log_next_idx)={log_vars + 16:x}",
        "SIZE(printk_log)=16",
        "OFFSET(printk_log.ts_nsec)=0",
        "OFFSET(printk_log.len)=8",
        "OFFSET(printk_log.text_len)=10",
        "OFFSET(printk_log.dict_len)=12",
    ]
    return VmcoreInfo.parse("\n".join(lines).encode() + b"\n")


def _printk_log(ts_nsec: int, text: bytes, dict_text: bytes = b"", level: int = 6) -> bytes:
    body = text + dict_text
    length = (16 + len(body) + 7) // 8 * 8
    header = struct.pack("<QHHHBB", ts_nsec, length, len(text), len(dict_text), 0, level << 5)
    return (header + body).ljust(length, b"\0")


def test_variable_length_records_3_5_to_5_9(elf61: Path) -> None:
    with open_dump(elf61) as base:
        space = address_space(base)
        scratch = 0x100000  # 1 MiB: RAM, present in the dump
        log_vars = space.page_offset_base + scratch
        dump = PatchedDump(base, _old_vmcoreinfo(base.vmcoreinfo, log_vars))
        buf_len = 4096
        oldest = _printk_log(1_000_000_000, b"wrapped away")  # before first_idx: not printed
        first = _printk_log(2_500_000, b"second\nline two \x01 caf\xc3\xa9", b"SUBSYSTEM=pci")
        last = _printk_log(3_000_001_000, b"at the end", level=3)
        newest = _printk_log(12_345_678_901_234, b"after the wrap")
        first_idx = buf_len - len(first) - len(last) - 16
        log = bytearray(buf_len)
        log[0 : len(oldest)] = oldest
        log[first_idx : first_idx + len(first)] = first
        log[first_idx + len(first) : first_idx + len(first) + len(last)] = last
        # A zero len after `last` sends the reader back to index 0, where `newest` now is.
        log[0 : len(newest)] = newest
        dump.patch(scratch, struct.pack("<QIII", log_vars + 4096, buf_len, first_idx, len(newest)))
        dump.patch(scratch + 4096, bytes(log))
        records = get_printk_records(dump)
    assert [r.text for r in records] == [
        b"second\nline two \x01 caf\xc3\xa9",
        b"at the end",
        b"after the wrap",
    ]
    assert records[0].dict == {"SUBSYSTEM": "pci"} and records[1].level == 3
    assert render_dmesg(records) == (
        b"[    0.002500] second\n"
        b"               line two \\x01 caf\\xffffffc3\\xffffffa9\n"
        b"[    3.000001] at the end\n"
        b"[12345.678901] after the wrap\n"
    )


def test_corrupt_record_length_is_one_line_error(elf61: Path) -> None:
    with open_dump(elf61) as base:
        space = address_space(base)
        log_vars = space.page_offset_base + 0x100000
        dump = PatchedDump(base, _old_vmcoreinfo(base.vmcoreinfo, log_vars))
        record = bytearray(_printk_log(1, b"x"))
        record[8:10] = struct.pack("<H", 5)  # shorter than its own header
        dump.patch(0x100000, struct.pack("<QIII", log_vars + 4096, 4096, 0, 64))
        dump.patch(0x100000 + 4096, bytes(record))
        with pytest.raises(PrintkError, match="record at index 0 is 5 bytes"):
            get_printk_records(dump)
