"""Signals: a task's signal handlers, blocked and pending signals."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drgn import Object

#: arch/x86/include/asm/thread_info.h
TIF_SIGPENDING = 2
#: _NSIG on x86_64
NSIG = 64


@dataclass
class SignalAction:
    """One signal's ``struct k_sigaction``."""

    signal: int
    #: the address of the k_sigaction
    address: int
    handler: int
    mask: int
    flags: int

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return asdict(self)


@dataclass
class PendingSignals:
    """A pending set: its signal mask and the queued siginfos (signal, address)."""

    signals: int
    queue: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class TaskSignals:
    """What ``sig`` shows of a task."""

    signal_struct: int
    nr_threads: int
    actions: list[SignalAction]
    sigpending: bool
    blocked: int
    private: PendingSignals
    shared: PendingSignals

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return asdict(self)


def _pending(pending: Object) -> PendingSignals:
    from drgn.helpers.linux.list import list_for_each_entry

    queue = [
        (q.info.si_signo.value_(), q.info.address_of_().value_())
        for q in list_for_each_entry("struct sigqueue", pending.list.address_of_(), "list")
    ]
    return PendingSignals(pending.signal.sig[0].value_(), queue)


def task_signals(task: Object) -> TaskSignals:
    """The task's handlers (its sighand_struct), blocked and pending signals."""
    signal = task.signal.read_()
    actions = []
    for number in range(1, NSIG + 1):
        action = task.sighand.action[number - 1]
        actions.append(
            SignalAction(
                signal=number,
                address=action.address_of_().value_(),
                handler=action.sa.sa_handler.value_(),
                mask=action.sa.sa_mask.sig[0].value_(),
                flags=action.sa.sa_flags.value_(),
            )
        )
    return TaskSignals(
        signal_struct=signal.value_(),
        nr_threads=signal.nr_threads.value_(),
        actions=actions,
        sigpending=bool(task.thread_info.flags.value_() & (1 << TIF_SIGPENDING)),
        blocked=task.blocked.sig[0].value_(),
        private=_pending(task.pending),
        shared=_pending(signal.shared_pending),
    )
