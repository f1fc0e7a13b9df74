"""The kernel log saved in a dump, from VMCOREINFO's printk keys (no type information).

Two layouts, tried newest first:

* Linux 5.10+ lockless ring buffer (``SYMBOL(prb)``): a descriptor ring of
  ``prb_desc`` (state and text block positions) with a parallel ``printk_info``
  array (seq, timestamp, text length, caller id, dev_printk_info dictionary), and
  a text data ring whose blocks start with the descriptor id.
* Linux 3.5–5.9 variable-length records (``SYMBOL(log_buf)``): ``struct
  printk_log`` headers followed by text and dictionary, from ``log_first_idx``
  to ``log_next_idx``; a record with ``len == 0`` means "wrap to the start".

:func:`render_dmesg` prints records exactly as ``makedumpfile --dump-dmesg``:
``[%5llu.%06lu] `` (then ``[%8s] `` with ``T<pid>``/``C<cpu>`` when the kernel
records a caller id and it is asked for, as makedumpfile 1.7.8 does), a newline
inside a record becomes a newline plus spaces up to the text column, bytes that
are neither printable nor white space in the C locale become ``\\xNN``, and
dictionaries are not printed.  makedumpfile formats a byte with the high bit set
through a signed ``char``, so it prints ``\\xffffffNN``; so do we.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kdumpkit.dump.base import Dump
from kdumpkit.dump.errors import DumpError
from kdumpkit.dump.vmcoreinfo import VmcoreInfo
from kdumpkit.kernel.arch import address_space
from kdumpkit.kernel.vaspace import KernelAddressSpace

#: The two top bits of prb_desc.state_var are the state, the rest is the id.
DESC_FLAGS_SHIFT = 62
DESC_ID_MASK = (1 << DESC_FLAGS_SHIFT) - 1
DESC_COMMITTED = 1
DESC_FINALIZED = 2
#: printk_info.caller_id: bit 31 set means a CPU number, else a task id.
CALLER_CPU_FLAG = 0x80000000
#: Width makedumpfile pads the caller id to (PID_CHARS_DEFAULT).
CALLER_ID_WIDTH = 8
#: Limits that bound memory use (a 128 MiB log is log_buf_len=128M; the usual is
#: 2^CONFIG_LOG_BUF_SHIFT, at most 32 MiB); beyond them the metadata is taken as corrupt.
#: The kernel sizes the descriptor ring at one descriptor per 32 text bytes.
MAX_TEXT_SIZE_BITS = 27
MAX_DESC_COUNT_BITS = MAX_TEXT_SIZE_BITS - 5
MAX_LOG_BUF_LEN = 1 << MAX_TEXT_SIZE_BITS


class PrintkError(DumpError):
    """The printk buffer is missing, or its metadata is corrupt."""


@dataclass
class PrintkRecord:
    """One kernel log record."""

    #: Sequence number (for 3.5–5.9 records, the index from the oldest record kept).
    seq: int
    ts_nsec: int
    #: Log level 0 (emerg) .. 7 (debug).
    level: int
    facility: int
    #: LOG_NEWLINE (2), LOG_CONT (8), ...
    flags: int
    #: ``T<pid>`` when bit 31 is clear, ``C<cpu>`` when set; None if the kernel keeps none.
    caller_id: int | None
    text: bytes
    #: SUBSYSTEM= and DEVICE= (5.10+), or every KEY=value of the old dictionary.
    dict: dict[str, str] = field(default_factory=dict)

    @property
    def caller(self) -> str | None:
        """The caller id as the kernel prints it: ``T123`` or ``C1``."""
        if self.caller_id is None:
            return None
        kind = "C" if self.caller_id & CALLER_CPU_FLAG else "T"
        return f"{kind}{self.caller_id & ~CALLER_CPU_FLAG}"


def _need(info: VmcoreInfo, kind: str, name: str) -> int:
    value = getattr(info, kind)(name)
    if value is None:
        key = f"{kind.upper()}({name})"
        raise PrintkError(f"VMCOREINFO has SYMBOL(prb) but no {key}: cannot read the log")
    return value


def _u64(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 8], "little")


def get_printk_records(dump: Dump) -> list[PrintkRecord]:
    """Every record of the kernel log in ``dump``, oldest first."""
    info = dump.vmcoreinfo
    if info is None:
        raise PrintkError(f"{dump.name}: the dump has no VMCOREINFO note: cannot find the log")
    space = address_space(dump)
    # Linux 5.10 (commit 896fbe20b4e2, "printk: use the lockless ringbuffer")
    # replaced log_buf's records with the prb ring buffer.
    if info.symbol("prb") is not None:
        return _prb_records(space, info)
    if info.symbol("log_buf") is not None and info.size("printk_log") is not None:
        return _log_buf_records(space, info)
    if info.symbol("log_buf") is not None:
        raise PrintkError("this kernel (before 3.5) keeps a plain character log; not supported")
    raise PrintkError("VMCOREINFO has neither SYMBOL(prb) nor SYMBOL(log_buf): no kernel log")


# --- Linux 5.10+: the lockless ring buffer ---------------------------------------------------


def _prb_records(space: KernelAddressSpace, info: VmcoreInfo) -> list[PrintkRecord]:
    prb_ptr = _need(info, "symbol", "prb")
    prb = space.read(space.read_u64(prb_ptr), _need(info, "size", "printk_ringbuffer"))
    counter = info.offset("atomic_long_t.counter") or 0
    desc_ring = _need(info, "offset", "printk_ringbuffer.desc_ring")
    text_ring = _need(info, "offset", "printk_ringbuffer.text_data_ring")

    count_bits = int.from_bytes(prb[desc_ring : desc_ring + 4], "little")
    size_bits = int.from_bytes(
        prb[text_ring + _need(info, "offset", "prb_data_ring.size_bits") :][:4], "little"
    )
    if count_bits > MAX_DESC_COUNT_BITS or size_bits > MAX_TEXT_SIZE_BITS or size_bits < 3:
        raise PrintkError(
            f"printk ring buffer is corrupt: 2^{count_bits} descriptors, 2^{size_bits} text bytes"
        )
    count, text_size = 1 << count_bits, 1 << size_bits
    desc_size = _need(info, "size", "prb_desc")
    info_size = _need(info, "size", "printk_info")
    descs_addr = _u64(prb, desc_ring + _need(info, "offset", "prb_desc_ring.descs"))
    infos_addr = _u64(prb, desc_ring + _need(info, "offset", "prb_desc_ring.infos"))
    text_addr = _u64(prb, text_ring + _need(info, "offset", "prb_data_ring.data"))
    head_id = _u64(prb, desc_ring + _need(info, "offset", "prb_desc_ring.head_id") + counter)
    tail_id = _u64(prb, desc_ring + _need(info, "offset", "prb_desc_ring.tail_id") + counter)

    descs = space.read(descs_addr, count * desc_size)
    infos = space.read(infos_addr, count * info_size)
    text = space.read(text_addr, text_size)

    span = (head_id - tail_id) & DESC_ID_MASK
    if span >= count:
        raise PrintkError(
            f"printk ring buffer is corrupt: tail id {tail_id:#x} is {span} records behind "
            f"head id {head_id:#x}, but the ring holds {count}"
        )
    layout = _InfoLayout.from_vmcoreinfo(info)
    state_off = _need(info, "offset", "prb_desc.state_var") + counter
    lpos_off = _need(info, "offset", "prb_desc.text_blk_lpos")
    begin_off = lpos_off + _need(info, "offset", "prb_data_blk_lpos.begin")
    next_off = lpos_off + _need(info, "offset", "prb_data_blk_lpos.next")
    records = []
    for step in range(span + 1):  # tail .. head inclusive, as makedumpfile walks it
        desc_id = (tail_id + step) & DESC_ID_MASK
        slot = desc_id % count
        desc = slot * desc_size
        state_var = _u64(descs, desc + state_off)
        if state_var & DESC_ID_MASK != desc_id:
            continue  # the slot was reused by a newer record
        if state_var >> DESC_FLAGS_SHIFT not in (DESC_COMMITTED, DESC_FINALIZED):
            continue
        begin = _u64(descs, desc + begin_off) % text_size
        end = _u64(descs, desc + next_off) % text_size
        if begin == end:
            continue  # a data-less record
        if begin > end:
            begin = 0  # the block wrapped: its text starts at the beginning of the ring
        begin += 8  # the block starts with the descriptor id
        record = layout.record(infos, slot * info_size)
        text_len = min(layout.read_text_len(infos, slot * info_size), max(0, end - begin))
        record.text = text[begin : begin + text_len]
        records.append(record)
    return records


@dataclass(frozen=True)
class _InfoLayout:
    """Where printk_info's fields are (VMCOREINFO gives all but facility/flags/level)."""

    seq: int
    ts_nsec: int
    text_len: int
    caller_id: int | None
    dev_info: int | None
    subsystem: tuple[int, int] | None
    device: tuple[int, int] | None

    @classmethod
    def from_vmcoreinfo(cls, info: VmcoreInfo) -> _InfoLayout:
        dev_info = info.offset("printk_info.dev_info")
        subsystem = device = None
        if dev_info is not None:
            sub_off = info.offset("dev_printk_info.subsystem")
            sub_len = info.length("printk_info_subsystem")
            dev_off = info.offset("dev_printk_info.device")
            dev_len = info.length("printk_info_device")
            if sub_off is not None and sub_len:
                subsystem = (dev_info + sub_off, sub_len)
            if dev_off is not None and dev_len:
                device = (dev_info + dev_off, dev_len)
        return cls(
            seq=_need(info, "offset", "printk_info.seq"),
            ts_nsec=_need(info, "offset", "printk_info.ts_nsec"),
            text_len=_need(info, "offset", "printk_info.text_len"),
            caller_id=info.offset("printk_info.caller_id"),
            dev_info=dev_info,
            subsystem=subsystem,
            device=device,
        )

    def read_text_len(self, infos: bytes, base: int) -> int:
        return int.from_bytes(infos[base + self.text_len : base + self.text_len + 2], "little")

    def record(self, infos: bytes, base: int) -> PrintkRecord:
        # struct printk_info: u16 text_len; u8 facility; u8 flags:5; u8 level:3 —
        # the two bytes after text_len have had this layout since 5.10.
        facility = infos[base + self.text_len + 2]
        flags_level = infos[base + self.text_len + 3]
        caller = None
        if self.caller_id is not None:
            caller = int.from_bytes(
                infos[base + self.caller_id : base + self.caller_id + 4], "little"
            )
        dictionary: dict[str, str] = {}
        for key, where in (("SUBSYSTEM", self.subsystem), ("DEVICE", self.device)):
            if where is not None:
                value = infos[base + where[0] : base + where[0] + where[1]].split(b"\0", 1)[0]
                if value:
                    dictionary[key] = value.decode("utf-8", "replace")
        return PrintkRecord(
            seq=_u64(infos, base + self.seq),
            ts_nsec=_u64(infos, base + self.ts_nsec),
            level=flags_level >> 5,
            facility=facility,
            flags=flags_level & 0x1F,
            caller_id=caller,
            text=b"",
            dict=dictionary,
        )


# --- Linux 3.5–5.9: variable-length records in log_buf ---------------------------------------


def _log_buf_records(space: KernelAddressSpace, info: VmcoreInfo) -> list[PrintkRecord]:
    # Linux 3.11 renamed struct log to struct printk_log; VMCOREINFO followed.
    def offset(member: str) -> int:
        value = info.offset(f"printk_log.{member}")
        if value is None:
            value = info.offset(f"log.{member}")
        if value is None:
            raise PrintkError(f"VMCOREINFO has SYMBOL(log_buf) but no OFFSET(printk_log.{member})")
        return value

    header_size = info.size("printk_log") or info.size("log") or 0
    ts_off, len_off, text_len_off = offset("ts_nsec"), offset("len"), offset("text_len")
    dict_len_off = info.offset("printk_log.dict_len")
    if dict_len_off is None:
        dict_len_off = info.offset("log.dict_len")
    buf_len = space.read_u32(_need_symbol(info, "log_buf_len"))
    first_idx = space.read_u32(_need_symbol(info, "log_first_idx"))
    next_idx = space.read_u32(_need_symbol(info, "log_next_idx"))
    if not header_size or buf_len > MAX_LOG_BUF_LEN or first_idx >= buf_len or next_idx >= buf_len:
        raise PrintkError(
            f"printk log_buf is corrupt: length {buf_len}, first index {first_idx}, "
            f"next index {next_idx}, record header {header_size} bytes"
        )
    buf = space.read(space.read_u64(_need_symbol(info, "log_buf")), buf_len)

    def u16(at: int) -> int:
        return int.from_bytes(buf[at : at + 2], "little")

    records: list[PrintkRecord] = []
    idx = first_idx
    for seq in range(buf_len // header_size + 1):
        if idx == next_idx:
            return records
        if idx + header_size > buf_len or u16(idx + len_off) == 0:
            idx = 0  # a zero length marks the end of the used part: wrap
            if idx == next_idx:
                return records
        length = u16(idx + len_off)
        if length < header_size or idx + length > buf_len:
            raise PrintkError(f"printk log_buf is corrupt: record at index {idx} is {length} bytes")
        text_len = u16(idx + text_len_off)
        dict_len = u16(idx + dict_len_off) if dict_len_off is not None else 0
        text_start = idx + header_size
        text = buf[text_start : min(text_start + text_len, idx + length)]
        raw_dict = buf[text_start + text_len : min(text_start + text_len + dict_len, idx + length)]
        # struct printk_log: ... u16 dict_len; u8 facility; u8 flags:5; u8 level:3;
        flags_at = (dict_len_off if dict_len_off is not None else text_len_off) + 2
        records.append(
            PrintkRecord(
                seq=seq,
                ts_nsec=_u64(buf, idx + ts_off),
                level=buf[idx + flags_at + 1] >> 5,
                facility=buf[idx + flags_at],
                flags=buf[idx + flags_at + 1] & 0x1F,
                caller_id=None,  # printk_log.caller_id (5.1+) is not in VMCOREINFO
                text=text,
                dict=_parse_dict(raw_dict),
            )
        )
        idx += length
    raise PrintkError("printk log_buf is corrupt: its records never reach log_next_idx")


def _need_symbol(info: VmcoreInfo, name: str) -> int:
    value = info.symbol(name)
    if value is None:
        raise PrintkError(f"VMCOREINFO has SYMBOL(log_buf) but no SYMBOL({name})")
    return value


def _parse_dict(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return out


# --- rendering ----------------------------------------------------------------------------------

#: Bytes C's isprint() or isspace() accept (C locale), other than the newline.
_UNPRINTABLE = re.compile(rb"[^\x09\x0b-\x0d\x20-\x7e\n]")


def _escape(match: re.Match[bytes]) -> bytes:
    byte = match.group()[0]
    # makedumpfile passes a signed char to printf("%02x"): 0x80..0xff print sign-extended.
    return b"\\x%02x" % byte if byte < 0x80 else b"\\xffffff%02x" % byte


def format_record(record: PrintkRecord, *, caller_id: bool = True) -> bytes:
    """One record as ``makedumpfile --dump-dmesg`` prints it, with its final newline."""
    seconds, nanos = divmod(record.ts_nsec, 1_000_000_000)
    prefix = b"[%5d.%06d] " % (seconds, nanos // 1000)
    if caller_id and record.caller is not None:
        prefix += b"[%*s] " % (CALLER_ID_WIDTH, record.caller.encode())
    text = _UNPRINTABLE.sub(_escape, record.text)
    if b"\n" in text:
        text = text.replace(b"\n", b"\n" + b" " * len(prefix))
    return prefix + text + b"\n"


def render_dmesg(records: list[PrintkRecord], *, caller_id: bool = True) -> bytes:
    """The whole log as ``makedumpfile --dump-dmesg`` writes it.

    ``caller_id=True`` is makedumpfile 1.7.8 (caller ids where the kernel keeps
    them); ``caller_id=False`` is makedumpfile 1.7.2 and older.
    """
    return b"".join(format_record(record, caller_id=caller_id) for record in records)
