"""Signature schemes on the real 6.1 fixture's analysis and on variants of it: near
duplicates (``.cold``/``.isra``, one more machinery frame, a module at another address)
share a v2 signature; the messenger crashes (hung task, lockup, NMI) are signed by what
they report."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from kdumpkit.server.analysis import CrashFacts, Frame, analyse, facts_from_report
from kdumpkit.server.signatures import load_skip_list, v1, v2


@pytest.fixture(scope="module")
def report_json(kdump61: Path) -> str:
    result = analyse(str(kdump61), (), 120, 4 << 30)
    assert result.status == "done", result.error
    assert result.report_json is not None
    return result.report_json


@pytest.fixture
def facts(report_json: str) -> CrashFacts:
    return facts_from_report(report_json)


def test_v1_is_the_report_signature(report_json: str, facts: CrashFacts) -> None:
    report = json.loads(report_json)
    assert v1(facts).digest == report["signature"]["sha256"]
    assert v1(facts).frames == report["signature"]["frames"]


def test_v2_frames(facts: CrashFacts) -> None:
    sig = v2(facts)
    assert sig.frames[:3] == [
        "sysrq_handle_crash @ vmlinux",
        "__handle_sysrq @ vmlinux",
        "write_sysrq_trigger @ vmlinux",
    ]
    assert sig.component == "vmlinux"


def test_facts_roundtrip(facts: CrashFacts) -> None:
    assert CrashFacts.from_json(facts.to_json()) == facts


def test_near_duplicates_share_v2(facts: CrashFacts) -> None:
    base = v2(facts).digest
    cold = copy.deepcopy(facts)
    for frame in cold.frames:
        if frame.function == "write_sysrq_trigger":
            frame.function = "write_sysrq_trigger.isra.0"
    assert v2(cold).digest == base
    warm = copy.deepcopy(facts)
    for frame in warm.frames:
        frame.function = frame.function.removesuffix(".cold")
    assert v2(warm).digest == base
    more_machinery = copy.deepcopy(facts)
    more_machinery.frames.insert(2, Frame("vpanic"))
    more_machinery.frames.insert(0, Frame("crash_save_cpu"))
    assert v2(more_machinery).digest == base
    # one frame of the crash itself less: another crash
    other = copy.deepcopy(facts)
    other.frames = [f for f in other.frames if f.function != "__handle_sysrq.cold"]
    assert v2(other).digest != base


def test_module_frames(facts: CrashFacts) -> None:
    """A module's frames are ``function @ module`` (no address: reloading the module at
    another base is the same crash); the module's O taint is hashed."""
    oops = copy.deepcopy(facts)
    oops.frames[3:5] = [
        Frame("crashmod_null_deref", "crashmod"),
        Frame("crashmod_write", "crashmod"),
    ]
    oops.modules["crashmod"] = "OE"
    sig = v2(oops)
    assert sig.frames[:2] == ["crashmod_null_deref @ crashmod", "crashmod_write @ crashmod"]
    assert sig.component == "crashmod"
    untainted = copy.deepcopy(oops)
    untainted.modules["crashmod"] = ""
    assert v2(untainted).digest != sig.digest


def test_hung_task_signed_by_the_blocked_task(facts: CrashFacts) -> None:
    """khungtaskd's stack is the same for every hung task: the blocked task's is used."""
    watchdog = [Frame("panic"), Frame("watchdog"), Frame("kthread"), Frame("ret_from_fork")]
    blocked = [Frame("schedule"), Frame("crashmod_hang", "crashmod"), Frame("vfs_write")]
    hung = CrashFacts(
        panic="hung_task: blocked tasks",
        frames=watchdog,
        crashing_comm="khungtaskd",
        hung_frames=blocked,
        hung_comm="crasher",
    )
    other = copy.deepcopy(hung)
    other.hung_frames = [Frame("schedule"), Frame("other_wait"), Frame("vfs_read")]
    sig = v2(hung)
    assert "crashmod_hang @ crashmod" in sig.frames and "watchdog @ vmlinux" not in sig.frames
    assert v2(other).digest != sig.digest
    assert "hung task crasher" in sig.title


def test_lockup_signed_by_the_interrupted_code() -> None:
    """A soft lockup: the watchdog's timer interrupt is the messenger; the interrupted
    code (below the interrupt's exception frame) is the signature, whatever the timer's
    own frames were."""
    timer = [
        Frame("panic"),
        Frame("watchdog_timer_fn"),
        Frame("__hrtimer_run_queues"),
        Frame("hrtimer_interrupt"),
        Frame("sysvec_apic_timer_interrupt"),
        Frame("asm_sysvec_apic_timer_interrupt", exception=True),
    ]
    spinning = [
        Frame("crashmod_spin", "crashmod"),
        Frame("crashmod_write", "crashmod"),
        Frame("vfs_write"),
        Frame("ksys_write"),
    ]
    lockup = CrashFacts(panic="softlockup: hung tasks", frames=timer + spinning)
    sig = v2(lockup)
    assert sig.frames[0] == "crashmod_spin @ crashmod" and "interrupted" in sig.title
    variant = CrashFacts(panic="softlockup: hung tasks", frames=timer[1:] + spinning)
    assert v2(variant).digest == sig.digest
    nmi = CrashFacts(
        panic="NMI: Not continuing",
        frames=[
            Frame("nmi_panic"),
            Frame("unknown_nmi_error"),
            Frame("default_do_nmi"),
            Frame("exc_nmi"),
            Frame("asm_exc_nmi", exception=True),
            Frame("default_idle"),
            Frame("do_idle"),
        ],
    )
    assert v2(nmi).frames[0] == "default_idle @ vmlinux"


def test_skip_list_is_editable(facts: CrashFacts, tmp_path: Path) -> None:
    custom = tmp_path / "skip.txt"
    custom.write_text(
        Path(__file__).parents[2].joinpath("kdumpkit/server/skip_frames.txt").read_text()
        + "sysrq_handle_crash\n__handle_sysrq\n"
    )
    sig = v2(facts, load_skip_list(custom))
    assert sig.frames[0] == "write_sysrq_trigger @ vmlinux"
    assert sig.digest != v2(facts).digest
