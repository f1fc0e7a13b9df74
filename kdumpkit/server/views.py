"""What the pages and the API show: problems aggregated from their dumps, a dump's detail,
hosts; typed records, filtered and sorted as the problem list asks."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from kdumpkit.server.db import Bucket, Dump, Problem


def release_key(release: str) -> tuple[int, ...]:
    """``6.1.0-56-cloud-amd64`` -> (6, 1, 0, 56): releases compared by their numbers."""
    return tuple(int(n) for n in re.findall(r"\d+", release))


def is_regression(release: str | None, fixed_in: str | None) -> bool:
    """An occurrence on the release a problem was fixed in, or a later one."""
    return bool(release and fixed_in and release_key(release) >= release_key(fixed_in))


@dataclass
class DumpRow:
    """A dump as the lists show it."""

    id: int
    status: str
    sha256: str
    host: str
    filename: str
    size: int
    received: str
    crashed: str | None
    release: str | None
    problem: int | None
    error: str | None
    stored: bool
    regression: bool = False


@dataclass
class ProblemRow:
    """A problem and what its dumps say."""

    id: int
    scheme: int
    signature: str
    title: str
    frames: list[str]
    component: str
    count: int = 0
    first_seen: str | None = None
    last_seen: str | None = None
    hosts: list[str] = field(default_factory=list)
    releases: list[str] = field(default_factory=list)
    taint: list[str] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)
    dumps: list[int] = field(default_factory=list)
    example: int | None = None
    fixed_in: str | None = None
    regressions: int = 0

    def as_json(self) -> dict[str, object]:
        """The API's form."""
        return asdict(self)


@dataclass
class Filters:
    """The problem list's filters (all optional)."""

    release: str | None = None
    host: str | None = None
    module: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _when(dump: Dump) -> datetime:
    return dump.crashed or dump.received


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value else None


def dump_row(dump: Dump, problem: Problem | None) -> DumpRow:
    """A dump's list row (``problem`` under the shown scheme)."""
    return DumpRow(
        id=dump.id,
        status=dump.status,
        sha256=dump.sha256,
        host=dump.host,
        filename=dump.filename,
        size=dump.size,
        received=_iso(dump.received) or "",
        crashed=_iso(dump.crashed),
        release=dump.release,
        problem=problem.id if problem else None,
        error=dump.error,
        stored=dump.stored,
        regression=is_regression(dump.release, problem.fixed_in if problem else None),
    )


def problem_modules(problem: Problem) -> list[str]:
    """The modules in a problem's stack (``function @ module`` frames)."""
    found: list[str] = []
    for frame in problem.frames.splitlines():
        module = frame.split(" @ ", 1)[1] if " @ " in frame else None
        if module and module != "vmlinux" and module not in found:
            found.append(module)
    return found


def problems(
    session: Session, scheme: int, filters: Filters | None = None, sort: str = "count"
) -> list[ProblemRow]:
    """Every problem of ``scheme`` with dumps passing the filters, sorted by ``count`` or
    ``last_seen`` (descending)."""
    filters = filters or Filters()
    rows: dict[int, ProblemRow] = {}
    newest: dict[int, datetime] = {}
    query = (
        select(Problem, Dump)
        .join(Bucket, Bucket.problem_id == Problem.id)
        .join(Dump, Dump.id == Bucket.dump_id)
        .where(Bucket.scheme == scheme)
        .order_by(Dump.id)
    )
    for problem, dump in session.execute(query):
        when = _when(dump)
        if filters.release and dump.release != filters.release:
            continue
        if filters.host and dump.host != filters.host:
            continue
        if filters.since and when < filters.since:
            continue
        if filters.until and when > filters.until:
            continue
        row = rows.get(problem.id)
        if row is None:
            row = rows[problem.id] = ProblemRow(
                id=problem.id,
                scheme=problem.scheme,
                signature=problem.signature,
                title=problem.title,
                frames=problem.frames.splitlines(),
                component=problem.component,
                modules=problem_modules(problem),
                fixed_in=problem.fixed_in,
            )
        if filters.module and filters.module not in row.modules:
            continue
        row.count += 1
        row.dumps.append(dump.id)
        if dump.host not in row.hosts:
            row.hosts.append(dump.host)
        if dump.release and dump.release not in row.releases:
            row.releases.append(dump.release)
        for letter in dump.taint or "":
            if letter.strip() and letter not in row.taint:
                row.taint.append(letter)
        if row.first_seen is None or when < datetime.fromisoformat(row.first_seen[:-1]):
            row.first_seen = _iso(when)
        if problem.id not in newest or when >= newest[problem.id]:
            newest[problem.id] = when
            row.last_seen = _iso(when)
        if dump.stored:
            row.example = dump.id
        if is_regression(dump.release, problem.fixed_in):
            row.regressions += 1
    result = [r for r in rows.values() if r.count]
    for row in result:
        row.releases.sort(key=release_key)
        row.hosts.sort()
    if sort == "last_seen":
        result.sort(key=lambda r: (r.last_seen or "", r.id), reverse=True)
    else:
        result.sort(key=lambda r: (r.count, r.last_seen or ""), reverse=True)
    return result


def problem_of(session: Session, dump_id: int, scheme: int) -> Problem | None:
    """The dump's problem under ``scheme``."""
    return session.scalar(
        select(Problem)
        .join(Bucket, Bucket.problem_id == Problem.id)
        .where(Bucket.dump_id == dump_id, Bucket.scheme == scheme)
    )


def dumps(session: Session, scheme: int, problem_id: int | None = None) -> list[DumpRow]:
    """Every dump (newest first), or a problem's."""
    query = (
        select(Dump, Problem)
        .outerjoin(Bucket, (Bucket.dump_id == Dump.id) & (Bucket.scheme == scheme))
        .outerjoin(Problem, Problem.id == Bucket.problem_id)
        .order_by(Dump.id.desc())
    )
    if problem_id is not None:
        query = query.where(Problem.id == problem_id)
    return [dump_row(d, p) for d, p in session.execute(query)]


@dataclass
class HostRow:
    """A host: its dumps and problems."""

    host: str
    dumps: int
    problems: list[int]
    releases: list[str]
    last_seen: str | None


def hosts(session: Session, scheme: int) -> list[HostRow]:
    """Every host that sent a dump."""
    rows: dict[str, HostRow] = {}
    for dump in dumps(session, scheme):
        row = rows.setdefault(dump.host, HostRow(dump.host, 0, [], [], None))
        row.dumps += 1
        if dump.problem and dump.problem not in row.problems:
            row.problems.append(dump.problem)
        if dump.release and dump.release not in row.releases:
            row.releases.append(dump.release)
        when = dump.crashed or dump.received
        if row.last_seen is None or when > row.last_seen:
            row.last_seen = when
    return sorted(rows.values(), key=lambda r: r.host)


def release_chart(session: Session, problem: ProblemRow) -> dict[str, object]:
    """Occurrences per release and day, for the problem page's small SVG chart."""
    days: dict[str, dict[str, int]] = {}
    for dump in session.scalars(select(Dump).where(Dump.id.in_(problem.dumps))):
        day = _when(dump).date().isoformat()
        per = days.setdefault(dump.release or "?", {})
        per[day] = per.get(day, 0) + 1
    all_days = sorted({d for per in days.values() for d in per})
    peak = max((n for per in days.values() for n in per.values()), default=1)
    return {"days": all_days, "releases": days, "peak": peak}


def command_outputs(dump: Dump) -> dict[str, str]:
    """The stored crash commands' outputs."""
    return json.loads(dump.commands) if dump.commands else {}
