"""Crash signatures, versioned: a dump is bucketed under every scheme, problems are shown
under the configured one, and a new scheme re-buckets from the stored :class:`CrashFacts`.

* v1: the report's own signature (its top frames once the panic machinery is dropped).
* v2: near-duplicate-aware, after ABRT Analytics' kernel-oops hash and Socorro's skip lists:
  frames normalised (``.cold``/``.isra``/``.constprop`` suffixes dropped) and written
  ``function @ module`` (no addresses, so another load address is the same frame), the
  machinery frames of an editable list skipped wherever they are, the component (the
  first frame's module) and the module-taint letters hashed with the first frames.  Where
  the crashing task is only the messenger, the signature comes from what it reports: a
  hung-task panic from the blocked task's stack, a lockup or an NMI from the code the
  interrupt stopped (the frames below the last interrupt's exception frame).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from kdumpkit.server.analysis import CrashFacts, Frame

#: frames hashed by v2
V2_FRAMES = 6
_SUFFIX = re.compile(r"(\.(cold|isra|constprop|part|lto_priv|llvm)(\.\d+)?)+$")
#: taint letters that say which code ran (proprietary, out-of-tree, unsigned, staging,
#: livepatch): part of v2's hash, as FAF hashes the taint; W (an earlier warning) is not
_CODE_TAINTS = frozenset("POECK")
#: panic messages of the crashes where the panicking task is only the messenger
_HUNG = re.compile(r"hung_task|blocked tasks", re.I)
_LOCKUP = re.compile(r"soft ?lockup|hard ?lockup|NMI|watchdog", re.I)


@dataclass
class Signature:
    """A dump's signature under one scheme."""

    scheme: int
    digest: str
    title: str
    frames: list[str]
    component: str


def load_skip_list(path: str | Path | None = None) -> frozenset[str]:
    """The editable list of frames v2 skips (the built-in one by default)."""
    text = Path(path or Path(__file__).with_name("skip_frames.txt")).read_text()
    return frozenset(
        line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()
    )


def _skipped(name: str, skip: frozenset[str]) -> bool:
    return name in skip or any(p.endswith("*") and name.startswith(p[:-1]) for p in skip)


def normalise(name: str) -> str:
    """``__handle_sysrq.cold+0x44`` -> ``__handle_sysrq``."""
    return _SUFFIX.sub("", name.split("+", 1)[0])


def _numbers_out(text: str) -> str:
    return re.sub(r"(0x)?[0-9a-fA-F]{4,}|\d+", "N", text)


def v1(facts: CrashFacts) -> Signature:
    """Scheme 1: the report's signature as it is."""
    basis = facts.report_basis or _numbers_out(facts.panic or "")
    frames = basis.split("|") if facts.report_basis else []
    digest = facts.report_signature or hashlib.sha256(basis.encode()).hexdigest()
    title = " | ".join(frames[:3]) or (facts.panic or "no stack")
    return Signature(1, digest, title, frames, frames[0] if frames else "")


def _interrupted(frames: list[Frame]) -> list[Frame]:
    """The frames below the innermost-last interrupt/NMI exception frame: the code the
    watchdog or NMI stopped (all frames when there is none)."""
    last = max(
        (
            i
            for i, f in enumerate(frames)
            if f.exception and not f.function.startswith("entry_SYSCALL")
        ),
        default=-1,
    )
    return frames[last + 1 :] if last >= 0 else frames


def messenger_frames(facts: CrashFacts) -> tuple[list[Frame], str]:
    """The stack the signature is built from, and why."""
    panic = facts.panic or ""
    if facts.hung_frames and (_HUNG.search(panic) or facts.crashing_comm == "khungtaskd"):
        return facts.hung_frames, f"hung task {facts.hung_comm}"
    if _LOCKUP.search(panic):
        inner = _interrupted(facts.frames)
        if inner is not facts.frames:
            return inner, "interrupted code"
    return facts.frames, "crashing task"


def v2(facts: CrashFacts, skip: frozenset[str] | None = None) -> Signature:
    """Scheme 2: near-duplicate-aware (see the module docstring)."""
    skip = load_skip_list() if skip is None else skip
    frames, source = messenger_frames(facts)
    names = [(normalise(f.function), f.module or "vmlinux") for f in frames]
    kept = [f"{name} @ {module}" for name, module in names if not _skipped(name, skip)]
    top = kept[:V2_FRAMES]
    component = top[0].split(" @ ", 1)[1] if top else "vmlinux"
    module_taint = "".join(
        sorted({c for c in facts.modules.get(component, "") + facts.taint if c in _CODE_TAINTS})
    )
    if top:
        basis = "\n".join([f"component {component}", f"taint {module_taint}", *top])
        title = " | ".join(n.split(" @ ")[0] for n in top[:3])
        if source != "crashing task":
            title = f"{title} ({source.split(' ')[0]} {source.split(' ', 1)[1]})"
    else:
        basis = "panic " + _numbers_out(facts.panic or "")
        title = facts.panic or "no stack"
    return Signature(2, hashlib.sha256(basis.encode()).hexdigest(), title, top, component)


#: the schemes by version
SCHEMES: dict[int, Callable[[CrashFacts], Signature]] = {1: v1, 2: v2}


def signatures(facts: CrashFacts, schemes: Iterable[int] = SCHEMES) -> list[Signature]:
    """The dump's signature under each scheme."""
    return [SCHEMES[s](facts) for s in schemes]
