"""A dump's life after ingest: claimed by one worker under a lease, analysed, completed
once (the status is final once, the bucket row is unique), then retention.

The broker may deliver a task twice (late acknowledgement after a worker died, a requeue
by the server's lease sweep): :func:`claim` lets one delivery run at a time and
:func:`complete` writes a final status only once, so a dump is never counted twice.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from kdumpkit.server import analysis
from kdumpkit.server.config import ServerConfig
from kdumpkit.server.db import (
    FINAL,
    QUEUED,
    RUNNING,
    Bucket,
    Dump,
    Problem,
    open_database,
    utcnow,
)
from kdumpkit.server.signatures import SCHEMES, Signature, load_skip_list, signatures, v2
from kdumpkit.server.store import DumpStore

if TYPE_CHECKING:
    from sqlalchemy import CursorResult


@dataclass
class Context:
    """What a worker (or the server) works with."""

    config: ServerConfig
    sessions: sessionmaker[Session]
    store: DumpStore

    @classmethod
    def open(cls, config: ServerConfig) -> Context:
        """Database (migrated) and store of ``config``."""
        store = DumpStore(config)  # makes the data directory, where SQLite lives
        return cls(config, open_database(config.db_url), store)


def worker_name() -> str:
    """host:pid of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(ctx: Context, dump_id: int) -> bool:
    """Take the dump for this process if it is queued, or running under a lapsed lease."""
    now = utcnow()
    with ctx.sessions.begin() as session:
        result = session.execute(
            update(Dump)
            .where(Dump.id == dump_id)
            .where(
                or_(
                    Dump.status == QUEUED,
                    (Dump.status == RUNNING) & (Dump.lease_until < now),
                )
            )
            .values(
                status=RUNNING,
                started=now,
                lease_until=now + timedelta(seconds=ctx.config.lease_seconds),
                attempts=Dump.attempts + 1,
                worker=worker_name(),
            )
        )
        return cast("CursorResult[Any]", result).rowcount == 1


def _renew(ctx: Context, dump_id: int, stop: threading.Event) -> None:
    """Keep the lease while the analysis runs."""
    period = ctx.config.lease_seconds / 3
    while not stop.wait(period):
        with ctx.sessions.begin() as session:
            session.execute(
                update(Dump)
                .where(Dump.id == dump_id, Dump.status == RUNNING, Dump.worker == worker_name())
                .values(lease_until=utcnow() + timedelta(seconds=ctx.config.lease_seconds))
            )


def problem_for(session: Session, signature: Signature) -> Problem:
    """The problem of a signature, created when new (two workers racing: one row)."""
    found = session.scalar(
        select(Problem).where(
            Problem.scheme == signature.scheme, Problem.signature == signature.digest
        )
    )
    if found is not None:
        return found
    try:
        with session.begin_nested():
            problem = Problem(
                scheme=signature.scheme,
                signature=signature.digest,
                title=signature.title[:2000],
                frames="\n".join(signature.frames),
                component=signature.component,
            )
            session.add(problem)
        return problem
    except IntegrityError:
        return session.scalars(
            select(Problem).where(
                Problem.scheme == signature.scheme, Problem.signature == signature.digest
            )
        ).one()


def bucket(session: Session, dump: Dump, sigs: list[Signature]) -> None:
    """Put the dump in its problem under each scheme (once: the bucket's primary key)."""
    for sig in sigs:
        problem = problem_for(session, sig)
        existing = session.get(Bucket, (dump.id, sig.scheme))
        if existing is None:
            session.add(Bucket(dump_id=dump.id, scheme=sig.scheme, problem_id=problem.id))
        else:
            existing.problem_id = problem.id


def _signatures(ctx: Context, facts: analysis.CrashFacts) -> list[Signature]:
    sigs = signatures(facts, [s for s in SCHEMES if s != 2])
    sigs.append(v2(facts, load_skip_list(ctx.config.skip_frames_file or None)))
    return sigs


def complete(ctx: Context, dump_id: int, result: analysis.AnalysisResult) -> bool:
    """Write the analysis unless the dump is final already; True when this call did."""
    facts = result.facts
    with ctx.sessions.begin() as session:
        dump = session.get(Dump, dump_id, with_for_update=True)
        if dump is None or dump.status in FINAL:
            return False
        dump.status = result.status
        dump.error = result.error
        dump.finished = utcnow()
        dump.lease_until = None
        dump.analysis_seconds = result.seconds
        dump.completions += 1
        dump.report = result.report_json
        dump.commands = json.dumps(result.commands) if result.commands else None
        if result.dmesg and not dump.dmesg:
            dump.dmesg = result.dmesg
        if facts is not None:
            dump.facts = facts.to_json()
            dump.release = facts.release
            dump.nodename = facts.nodename
            dump.panic = facts.panic
            dump.taint = facts.taint
            if facts.crash_time:
                dump.crashed = datetime.fromtimestamp(facts.crash_time, UTC).replace(tzinfo=None)
            session.flush()
            bucket(session, dump, _signatures(ctx, facts))
    return True


def analyse_dump(ctx: Context, dump_id: int) -> str:
    """The task: claim, analyse under the limits, complete; the outcome in a word."""
    if not claim(ctx, dump_id):
        return "skipped"
    with ctx.sessions() as session:
        dump = session.get(Dump, dump_id)
        assert dump is not None
        path = ctx.store.path_of(dump.sha256)
        filename = dump.filename or dump.sha256
    stop = threading.Event()
    renewer = threading.Thread(target=_renew, args=(ctx, dump_id, stop), daemon=True)
    renewer.start()
    try:
        if not path.exists():
            result = analysis.AnalysisResult(analysis.FAILED, "the dump's file is gone")
        else:
            result = analysis.analyse(
                str(path), ctx.config.commands, ctx.config.time_limit, ctx.config.memory_limit
            )
            if result.error:
                # the reader names the stored file: say the uploaded name instead
                result.error = result.error.replace(str(path), filename)
    finally:
        stop.set()
        renewer.join()
    done = complete(ctx, dump_id, result)
    return result.status if done else "skipped"


def rebucket(ctx: Context, scheme: int) -> int:
    """Bucket every analysed dump under ``scheme`` from its stored facts; how many."""
    count = 0
    with ctx.sessions.begin() as session:
        for dump in session.scalars(select(Dump).where(Dump.facts.is_not(None))):
            facts = analysis.CrashFacts.from_json(dump.facts or "")
            sig = next(s for s in _signatures(ctx, facts) if s.scheme == scheme)
            bucket(session, dump, [sig])
            count += 1
    return count


def apply_retention(ctx: Context) -> list[str]:
    """Delete dump files beyond the newest N per problem, and the oldest analysed ones
    while the store passes its cap; never one queued or running. The sha256s deleted."""
    deleted: list[str] = []
    keep = ctx.config.keep_per_problem
    with ctx.sessions.begin() as session:
        victims: list[Dump] = []
        if keep:
            rows = session.execute(
                select(Dump, Bucket.problem_id)
                .join(Bucket, Bucket.dump_id == Dump.id)
                .where(Bucket.scheme == ctx.config.scheme, Dump.stored.is_(True))
                .order_by(Bucket.problem_id, Dump.received.desc(), Dump.id.desc())
            ).all()
            seen: dict[int, int] = {}
            for dump, problem_id in rows:
                seen[problem_id] = seen.get(problem_id, 0) + 1
                if seen[problem_id] > keep and dump.status in FINAL:
                    victims.append(dump)
        if ctx.config.store_cap:
            used = session.scalar(select(func.sum(Dump.size)).where(Dump.stored.is_(True))) or 0
            used -= sum(v.size for v in victims)
            if used > ctx.config.store_cap:
                for dump in session.scalars(
                    select(Dump)
                    .where(Dump.stored.is_(True), Dump.status.in_(FINAL))
                    .order_by(Dump.received, Dump.id)
                ):
                    if used <= ctx.config.store_cap:
                        break
                    if dump not in victims:
                        victims.append(dump)
                        used -= dump.size
        for dump in victims:
            dump.stored = False
            deleted.append(dump.sha256)
    for sha in deleted:
        ctx.store.delete(sha)
    return deleted


def stale_dumps(ctx: Context) -> list[int]:
    """Dumps to send to the broker again: running under a lapsed lease (their worker died),
    or queued for longer than ``requeue_seconds`` (the broker lost the message)."""
    now = utcnow()
    with ctx.sessions.begin() as session:
        ids = list(
            session.scalars(
                select(Dump.id).where(
                    or_(
                        (Dump.status == RUNNING) & (Dump.lease_until < now),
                        (Dump.status == QUEUED)
                        & (Dump.enqueued < now - timedelta(seconds=ctx.config.requeue_seconds)),
                    )
                )
            )
        )
        if ids:
            session.execute(update(Dump).where(Dump.id.in_(ids)).values(enqueued=now))
    return ids


def spool_files(spool: Path) -> list[Path]:
    """Complete dumps a ``collect`` target holds (``dump.<stamp>``; not ``.incomplete``)."""
    return sorted(
        p
        for p in spool.rglob("dump.*")
        if p.is_file() and not p.name.endswith((".incomplete", ".part"))
    )
