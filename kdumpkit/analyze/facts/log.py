"""The kernel log: printk records, and the panic line in them."""

from __future__ import annotations

import builtins
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from kdumpkit.analyze.context import program_dump

if TYPE_CHECKING:
    from drgn import Program

#: caller_id's top bit: the record was logged from a CPU context, not a task (printk.c)
CALLER_IS_CPU = 0x80000000


@dataclass
class LogRecord:
    """One printk record."""

    timestamp_ns: int
    level: int
    facility: int
    #: the thread that logged it, or the CPU when logged from an interrupt context
    caller_tid: int | None
    caller_cpu: int | None
    text: str
    #: the record's dictionary (SUBSYSTEM=, DEVICE=)
    dict: builtins.dict[str, str] = field(default_factory=builtins.dict)

    def to_json(self) -> builtins.dict[str, Any]:
        """The record as JSON-ready data."""
        return asdict(self)


def _records_from_vmcoreinfo(prog: Program) -> list[LogRecord]:
    """The log read with VMCOREINFO's layouts alone (no types), from the dump itself."""
    from kdumpkit.kernel.printk import get_printk_records

    dump = program_dump(prog)
    if dump is None:
        raise LookupError("no types for the printk ring buffer and no dump to read it from")
    records = []
    for record in get_printk_records(dump):
        caller = record.caller_id
        records.append(
            LogRecord(
                timestamp_ns=record.ts_nsec,
                level=record.level,
                facility=record.facility,
                caller_tid=caller if caller is not None and not caller & CALLER_IS_CPU else None,
                caller_cpu=caller & ~CALLER_IS_CPU if caller and caller & CALLER_IS_CPU else None,
                text=record.text.decode("utf-8", "replace"),
                dict=dict(record.dict),
            )
        )
    return records


def log_records(prog: Program) -> list[LogRecord]:
    """Every printk record: timestamp (ns), level, facility, caller and text."""
    from drgn.helpers.linux.printk import get_printk_records

    try:
        drgn_records = get_printk_records(prog)
    except LookupError:
        # No type for the ring buffer (a kernel without BTF, no vmlinux).
        return _records_from_vmcoreinfo(prog)
    return [
        LogRecord(
            timestamp_ns=record.timestamp,
            level=record.level,
            facility=record.facility,
            caller_tid=record.caller_tid,
            caller_cpu=record.caller_cpu,
            text=record.text.decode("utf-8", "replace"),
            dict={
                key.decode("utf-8", "replace"): value.decode("utf-8", "replace")
                for key, value in record.context.items()
            },
        )
        for record in drgn_records
    ]


#: the kernel's dump_stack() header: "CPU: 0 PID: 134 Comm: testbed_crasher ..."
DUMP_STACK_HEADER = re.compile(r"CPU: (\d+) (?:UID: \d+ )?PID: (\d+) Comm: (\S+)")
#: panic messages, most telling first (as drgn.helpers.linux.panic ranks them)
_PANIC_LINE = re.compile(
    r"(Kernel panic - .*)|(BUG: (?:kernel NULL pointer dereference|unable to handle).*"
    r"|Unable to handle kernel.*)|([Kk]ernel BUG at.*)|(Oops: .*)"
)


def panic_from_log(lines: list[str]) -> str | None:
    """The most telling panic line of the log (without its timestamp)."""
    best: tuple[int, str] | None = None
    for line in lines:
        match = _PANIC_LINE.search(line)
        if match and match.lastindex is not None and (best is None or match.lastindex < best[0]):
            best = (match.lastindex, match.group())
    return best[1] if best else None


def dump_stack_task(lines: list[str], cpu: int) -> tuple[int, str] | None:
    """(PID, comm) of the last dump_stack() header the log has for ``cpu``."""
    for line in reversed(lines):
        match = DUMP_STACK_HEADER.search(line)
        if match and int(match.group(1)) == cpu:
            return int(match.group(2)), match.group(3)
    return None


@dataclass
class AuditRecord:
    """One audit message still queued for auditd (an ``sk_buff`` of a netlink
    message)."""

    #: the netlink message type (AUDIT_*)
    type: int
    text: str

    def to_json(self) -> builtins.dict[str, Any]:
        """The record as JSON-ready data."""
        return asdict(self)


#: the queues the kernel keeps audit messages in, oldest first: Linux kernel commit
#: c6480207fdf7 ("audit: rework the audit queue handling") (v4.11) renamed
#: audit_skb_queue / audit_skb_hold_queue and added audit_retry_queue
AUDIT_QUEUES = (
    ("audit_queue", ("audit_hold_queue", "audit_retry_queue", "audit_queue")),
    ("audit_skb_queue", ("audit_skb_hold_queue", "audit_skb_queue")),
)
#: sizeof(struct nlmsghdr), already NLMSG_ALIGNTO-aligned; nlmsg_type's offset in it
NLMSGHDR_SIZE, NLMSG_TYPE_OFFSET = 16, 4


def audit_records(prog: Program) -> list[AuditRecord] | None:
    """The audit messages not yet read by auditd, or None when the kernel has no audit
    queues (CONFIG_AUDIT=n)."""
    import drgn

    from kdumpkit.analyze.stack import kernel_symbol

    for marker, queues in AUDIT_QUEUES:
        if kernel_symbol(prog, marker) is None:
            continue
        records = []
        for name in queues:
            symbol = kernel_symbol(prog, name)
            if symbol is None:
                continue
            head = drgn.Object(prog, "struct sk_buff_head", address=symbol.address)
            skb = head.next.read_()
            for _ in range(1 << 20):  # a corrupt list must not run forever
                if skb.value_() == symbol.address:
                    break
                data = skb.data.value_()
                length = skb.len.value_() - NLMSGHDR_SIZE
                kind = int.from_bytes(prog.read(data + NLMSG_TYPE_OFFSET, 2), "little")
                text = prog.read(data + NLMSGHDR_SIZE, max(length, 0))
                records.append(
                    AuditRecord(kind, text.split(b"\0", 1)[0].decode("utf-8", "replace"))
                )
                skb = skb.next.read_()
        return records
    return None
