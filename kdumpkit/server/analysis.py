"""The one adapter between the server and kdumpkit's analysis.

Every use of the report's fields is here: :func:`facts_from_report` turns the report's JSON
form into :class:`CrashFacts`, the typed record signatures and pages use, so a stored
analysis can be bucketed again (a new signature scheme) without reading the dump.
:func:`analyse` runs the report and the configured crash commands in a child process
(``python -m kdumpkit.server.analysis``) under a wall-clock and an address-space limit: a
dump that hangs or bloats the analysis costs one task, never the worker.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

#: outcomes of an analysis
DONE, FAILED, UNREADABLE = "done", "failed", "unreadable"

#: the log line khungtaskd prints before a hung-task panic (kernel/hung_task.c)
_HUNG_TASK = re.compile(r"INFO: task (?P<comm>.+):(?P<pid>\d+) blocked for more than")


@dataclass
class Frame:
    """One stack frame as signatures see it."""

    function: str
    module: str | None = None
    exception: bool = False


@dataclass
class CrashFacts:
    """What a stored analysis says about the crash (from the report's JSON form)."""

    release: str | None = None
    nodename: str | None = None
    machine: str | None = None
    panic: str | None = None
    crash_time: int | None = None
    taint: str = ""
    taint_flags: list[str] = field(default_factory=list)
    #: the crashing task's stack, innermost first
    frames: list[Frame] = field(default_factory=list)
    crashing_comm: str | None = None
    #: the stack of the task a hung-task panic reports (else empty)
    hung_frames: list[Frame] = field(default_factory=list)
    hung_comm: str | None = None
    #: the modules loaded when it crashed, and their taint letters
    modules: dict[str, str] = field(default_factory=dict)
    #: today's report signature (scheme v1)
    report_signature: str | None = None
    report_basis: str = ""

    def to_json(self) -> str:
        """Stored in the dumps table."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CrashFacts:
        """Inverse of :meth:`to_json`."""
        data = json.loads(text)
        for key in ("frames", "hung_frames"):
            data[key] = [Frame(**f) for f in data.get(key, [])]
        return cls(**data)


def _frames(rows: list[dict[str, Any]] | None) -> list[Frame]:
    return [
        Frame(
            function=row["function"],
            module=row.get("module"),
            exception=bool(row.get("is_exception_frame")),
        )
        for row in rows or []
        if row.get("function")
    ]


def facts_from_report(report_json: str) -> CrashFacts:
    """The report's JSON form -> :class:`CrashFacts` (the only reader of report fields)."""
    report: dict[str, Any] = json.loads(report_json)
    crashing = report.get("crashing_task") or {}
    taint = report.get("taint") or {}
    signature = report.get("signature") or {}
    facts = CrashFacts(
        release=report.get("release"),
        nodename=report.get("nodename"),
        machine=report.get("machine"),
        panic=report.get("panic"),
        crash_time=report.get("crash_time"),
        taint=taint.get("letters") or "",
        taint_flags=list(taint.get("flags") or []),
        frames=_frames(crashing.get("backtrace")),
        crashing_comm=crashing.get("comm"),
        modules={m["name"]: m.get("taints") or "" for m in report.get("modules") or []},
        report_signature=signature.get("sha256"),
        report_basis=signature.get("basis") or "",
    )
    blocked = report.get("blocked_tasks") or []
    if blocked:
        named = None
        for line in report.get("log_tail") or []:
            match = _HUNG_TASK.search(line)
            if match:
                named = (match["comm"], int(match["pid"]))
        chosen = next(
            (t for t in blocked if named and (t.get("comm"), t.get("pid")) == named), blocked[0]
        )
        facts.hung_frames = _frames(chosen.get("backtrace"))
        facts.hung_comm = chosen.get("comm")
    return facts


def report_text(report_json: str) -> str | None:
    """A stored report as ``kdumpkit report`` prints it (rendered by the worker from the
    report record, kept with its JSON under ``text``)."""
    text = json.loads(report_json).get("text")
    return text if isinstance(text, str) else None


@dataclass
class AnalysisResult:
    """One analysis: its outcome, the report's JSON form, the commands' outputs."""

    status: str
    error: str | None = None
    report_json: str | None = None
    commands: dict[str, str] = field(default_factory=dict)
    dmesg: str | None = None
    seconds: float = 0.0

    @property
    def facts(self) -> CrashFacts | None:
        """The crash facts of a done analysis."""
        return facts_from_report(self.report_json) if self.report_json else None


def _limit_memory(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def analyse(
    path: str, commands: tuple[str, ...], time_limit: float, memory_limit: int
) -> AnalysisResult:
    """Analyse the dump at ``path`` in a child process under the limits."""
    start = time.monotonic()
    argv = [sys.executable, "-m", "kdumpkit.server.analysis", path]
    for line in commands:
        argv += ["--command", line]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    try:
        child = subprocess.run(
            argv,
            capture_output=True,
            timeout=time_limit,
            preexec_fn=(lambda: _limit_memory(memory_limit)) if memory_limit else None,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return AnalysisResult(
            FAILED, f"analysis took longer than {time_limit:g} s", seconds=time_limit
        )
    seconds = time.monotonic() - start
    try:
        data = json.loads(child.stdout)
    except ValueError:
        stderr = child.stderr.decode(errors="replace").strip().splitlines()
        if child.returncode < 0:
            why = f"analysis killed by signal {-child.returncode}"
        elif stderr and any(
            sign in stderr[-1]
            for sign in ("MemoryError", "failed to map segment", "Cannot allocate memory")
        ):
            why = f"analysis ran out of memory (limit {memory_limit >> 20} MiB): {stderr[-1]}"
        else:
            why = f"analysis failed: {stderr[-1] if stderr else f'exit {child.returncode}'}"
        return AnalysisResult(FAILED, why, seconds=seconds)
    return AnalysisResult(
        status=data["status"],
        error=data.get("error"),
        report_json=data.get("report"),
        commands=data.get("commands") or {},
        dmesg=data.get("dmesg"),
        seconds=seconds,
    )


def _child(path: str, commands: list[str]) -> dict[str, Any]:
    """In the child: open the dump, gather and render the report, run the commands."""
    from kdumpkit.analyze.report import gather_report, render_json, render_text
    from kdumpkit.analyze.session import Session, open_for_analysis
    from kdumpkit.dump.errors import DumpError

    try:
        prog = open_for_analysis(path)
    except DumpError as exc:
        return {"status": UNREADABLE, "error": str(exc).splitlines()[0]}
    except OSError as exc:
        return {"status": UNREADABLE, "error": f"{path}: {exc.strerror or exc}"}
    except Exception as exc:  # the reader failed in a way it does not name: still one line
        return {"status": UNREADABLE, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    try:
        record = gather_report(prog)
        data = json.loads(render_json(record))
        data["text"] = render_text(record)
        report = json.dumps(data)
    except MemoryError:
        raise
    except Exception as exc:
        return {"status": FAILED, "error": f"report: {type(exc).__name__}: {exc}".splitlines()[0]}
    session = Session(prog)
    outputs = {line: session.run_to_text(line) for line in commands}
    return {
        "status": DONE,
        "report": report,
        "commands": outputs,
        "dmesg": session.run_to_text("log"),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m kdumpkit.server.analysis DUMP [--command LINE]...``: JSON on stdout."""
    parser = argparse.ArgumentParser(prog="kdumpkit.server.analysis")
    parser.add_argument("dump")
    parser.add_argument("--command", action="append", default=[])
    args = parser.parse_args(argv)
    result = _child(args.dump, args.command)
    sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
