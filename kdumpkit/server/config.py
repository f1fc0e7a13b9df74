"""The server's settings: one dataclass, read by the server, its workers and the CLI."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: crash commands whose outputs are stored with each analysis (editable per server)
DEFAULT_COMMANDS: tuple[str, ...] = ("sys", "bt", "log", "ps", "mod")


def embedded_db_url(data: Path) -> str:
    """The SQLite database inside the data directory."""
    return f"sqlite:///{data / 'kdumpkit.sqlite'}"


def embedded_broker_url(data: Path) -> str:
    """Kombu's SQLAlchemy transport on a SQLite file: a Celery broker that needs no server."""
    return f"sqla+sqlite:///{data / 'broker.sqlite'}"


@dataclass
class ServerConfig:
    """Where things are and what the limits are."""

    data: Path
    db_url: str = ""
    broker_url: str = ""
    #: largest accepted upload, bytes
    max_upload: int = 64 << 30
    #: the dump store may not grow beyond this many bytes (0 = no cap)
    store_cap: int = 0
    #: free bytes the file system must keep after an upload
    min_free: int = 64 << 20
    #: dumps kept per problem (older ones' files are deleted; analyses are kept); 0 = all
    keep_per_problem: int = 0
    commands: tuple[str, ...] = DEFAULT_COMMANDS
    #: per analysis: wall-clock seconds and address-space bytes of the child process
    time_limit: float = 600.0
    memory_limit: int = 4 << 30
    #: a running analysis whose lease ran out is given to another worker
    lease_seconds: float = 30.0
    #: a queued dump not started after this long is sent to the broker again
    requeue_seconds: float = 120.0
    #: the signature scheme problems are shown in
    scheme: int = 2
    #: a file listing the frames signature v2 skips ("": the built-in list)
    skip_frames_file: str = ""

    def __post_init__(self) -> None:
        self.data = Path(self.data)
        if not self.db_url:
            self.db_url = embedded_db_url(self.data)
        if not self.broker_url:
            self.broker_url = embedded_broker_url(self.data)

    @property
    def store_dir(self) -> Path:
        """Complete dumps, named by their sha256."""
        return self.data / "dumps"

    @property
    def incoming_dir(self) -> Path:
        """Uploads being received, under incomplete names."""
        return self.data / "incoming"

    @property
    def embedded_broker(self) -> bool:
        """True when the broker is a file of this machine (workers must run here)."""
        return self.broker_url.startswith(("sqla+sqlite", "filesystem"))

    @classmethod
    def from_environ(cls) -> ServerConfig:
        """The settings a worker process inherits (``KDUMPKIT_SERVER_*``)."""
        env = os.environ
        kwargs: dict[str, object] = {"data": Path(env["KDUMPKIT_SERVER_DATA"])}
        for name, conv in (
            ("db_url", str),
            ("broker_url", str),
            ("time_limit", float),
            ("memory_limit", int),
            ("lease_seconds", float),
            ("requeue_seconds", float),
            ("keep_per_problem", int),
            ("scheme", int),
            ("skip_frames_file", str),
        ):
            value = env.get(f"KDUMPKIT_SERVER_{name.upper()}")
            if value:
                kwargs[name] = conv(value)
        commands = env.get("KDUMPKIT_SERVER_COMMANDS")
        if commands is not None:
            kwargs["commands"] = tuple(c for c in commands.split(";") if c.strip())
        return cls(**kwargs)  # type: ignore[arg-type]

    def to_environ(self) -> dict[str, str]:
        """The inverse of :meth:`from_environ`, for worker processes this server starts."""
        return {
            "KDUMPKIT_SERVER_DATA": str(self.data),
            "KDUMPKIT_SERVER_DB_URL": self.db_url,
            "KDUMPKIT_SERVER_BROKER_URL": self.broker_url,
            "KDUMPKIT_SERVER_TIME_LIMIT": str(self.time_limit),
            "KDUMPKIT_SERVER_MEMORY_LIMIT": str(self.memory_limit),
            "KDUMPKIT_SERVER_LEASE_SECONDS": str(self.lease_seconds),
            "KDUMPKIT_SERVER_REQUEUE_SECONDS": str(self.requeue_seconds),
            "KDUMPKIT_SERVER_KEEP_PER_PROBLEM": str(self.keep_per_problem),
            "KDUMPKIT_SERVER_SCHEME": str(self.scheme),
            "KDUMPKIT_SERVER_COMMANDS": ";".join(self.commands),
            "KDUMPKIT_SERVER_SKIP_FRAMES_FILE": self.skip_frames_file,
        }
