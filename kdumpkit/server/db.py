"""The database: SQLAlchemy 2 models, the engine, and the Alembic upgrade run at start.

One row per stored dump (its file, status, analysis), one per problem and signature
scheme, and a ``buckets`` row per dump and scheme: its primary key is what makes a dump
count once in a problem however often its analysis completes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import secrets
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

#: dump statuses
QUEUED, RUNNING, DONE, FAILED, UNREADABLE = "queued", "running", "done", "failed", "unreadable"
FINAL = frozenset({DONE, FAILED, UNREADABLE})
ROLES = ("upload", "read", "admin")


def utcnow() -> datetime:
    """Timestamps are stored as naive UTC (SQLite keeps no zone)."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    """The models' base."""


class Token(Base):
    """A bearer token: only its sha256 is stored."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    host: Mapped[str | None] = mapped_column(String(255))
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Problem(Base):
    """Dumps of one crash signature under one scheme."""

    __tablename__ = "problems"
    __table_args__ = (UniqueConstraint("scheme", "signature"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scheme: Mapped[int] = mapped_column(Integer)
    signature: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(Text)
    #: the signature's frames, one per line
    frames: Mapped[str] = mapped_column(Text, default="")
    component: Mapped[str] = mapped_column(String(255), default="")
    fixed_in: Mapped[str | None] = mapped_column(String(255))
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Dump(Base):
    """A stored dump (by content) and its analysis."""

    __tablename__ = "dumps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    host: Mapped[str] = mapped_column(String(255))
    filename: Mapped[str] = mapped_column(String(255), default="")
    received: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    #: False once retention deleted the file (the analysis stays)
    stored: Mapped[bool] = mapped_column(default=True)
    status: Mapped[str] = mapped_column(String(16), default=QUEUED, index=True)
    error: Mapped[str | None] = mapped_column(Text)
    enqueued: Mapped[datetime | None] = mapped_column(DateTime)
    started: Mapped[datetime | None] = mapped_column(DateTime)
    finished: Mapped[datetime | None] = mapped_column(DateTime)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    completions: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(255))
    analysis_seconds: Mapped[float | None] = mapped_column(Float)
    dmesg: Mapped[str | None] = mapped_column(Text)
    #: the report's JSON form, as kdumpkit's report renders it
    report: Mapped[str | None] = mapped_column(Text)
    #: {command line: output} as JSON
    commands: Mapped[str | None] = mapped_column(Text)
    #: the crash facts signatures are computed from, as JSON (see analysis.CrashFacts)
    facts: Mapped[str | None] = mapped_column(Text)
    release: Mapped[str | None] = mapped_column(String(255), index=True)
    nodename: Mapped[str | None] = mapped_column(String(255))
    panic: Mapped[str | None] = mapped_column(Text)
    taint: Mapped[str | None] = mapped_column(String(64))
    crashed: Mapped[datetime | None] = mapped_column(DateTime)


class Bucket(Base):
    """Which problem a dump belongs to under a scheme: once, by the primary key."""

    __tablename__ = "buckets"
    dump_id: Mapped[int] = mapped_column(
        ForeignKey("dumps.id", ondelete="CASCADE"), primary_key=True
    )
    scheme: Mapped[int] = mapped_column(Integer, primary_key=True)
    problem_id: Mapped[int] = mapped_column(ForeignKey("problems.id"), index=True)


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine; SQLite in WAL mode with a busy timeout (server and workers share it)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (the migrations ship in the package)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with contextlib.ExitStack() as stack:
        if engine.dialect.name == "sqlite" and engine.url.database:
            # server and workers start together: one migrates, the others wait
            lock = stack.enter_context(open(f"{engine.url.database}.migrate-lock", "a"))
            fcntl.flock(lock, fcntl.LOCK_EX)
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7370656564)")
            config.attributes["connection"] = connection
            command.upgrade(config, "head")


def open_database(url: str) -> sessionmaker[Session]:
    """Engine, migrations, session factory."""
    engine = make_engine(url)
    migrate(engine)
    return sessionmaker(engine, expire_on_commit=False)


def token_digest(token: str) -> str:
    """What the tokens table stores of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(sessions: sessionmaker[Session], role: str, host: str | None = None) -> str:
    """A new random token of ``role`` (for ``host``); returns the token, stores its digest."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if role == "upload" and not host:
        raise ValueError("an upload token needs --host NAME")
    token = f"kdk_{role}_{secrets.token_urlsafe(24)}"
    with sessions.begin() as session:
        session.add(Token(digest=token_digest(token), role=role, host=host))
    return token


def lookup_token(session: Session, token: str) -> Token | None:
    """The token's row, if it exists."""
    return session.scalar(select(Token).where(Token.digest == token_digest(token)))
