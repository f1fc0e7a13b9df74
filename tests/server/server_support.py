"""Helpers of the server tests (their conftest.py imports the fixtures): throwaway Redis
and PostgreSQL started here (no system service), and a running ``kdumpkit server`` per
test, once with the embedded default (SQLite + Celery's SQLAlchemy transport, workers
started by the server) and once with PostgreSQL + Redis and separately started
``kdumpkit worker`` processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ["embedded", "redis-postgres"]
#: settings that make fault tests quick: a dead worker's lease lapses in 3 s
FAST = ["--lease-seconds", "3", "--requeue-seconds", "4"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kdumpkit_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    return {k: v for k, v in env.items() if not k.startswith("KDUMPKIT_SERVER_")}


@dataclass
class Redis:
    """A throwaway redis-server (no persistence: a restart loses its queue)."""

    dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_port(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (scripts/install-deps.sh)")
    server = Redis(tmp_path / "redis")
    server.dir.mkdir()
    server.start()
    yield server
    server.stop()


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.skip("postgresql is not installed (scripts/install-deps.sh)")
    return found[-1].parent


def _as_nobody(argv: list[str]) -> list[str]:
    # initdb and postgres refuse root: run them as nobody
    return (
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv]
        if (os.geteuid() == 0)
        else argv
    )


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A PostgreSQL cluster in a temporary directory; yields its base URL (no database).
    Not under pytest's tmp (mode 0700 to root): its user, nobody, must reach it."""
    import tempfile

    bindir = _pg_bin()
    base = Path(tempfile.mkdtemp(prefix="kdumpkit-pg-"))
    data = base / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "nobody", "nogroup")
        shutil.chown(data, "nobody", "nogroup")
    subprocess.run(
        _as_nobody(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    port = free_port()
    proc = subprocess.Popen(
        _as_nobody(
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(base),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ]
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port, proc)
    yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    stop(proc, signal.SIGINT)
    shutil.rmtree(base, ignore_errors=True)


_databases = iter(range(1, 10_000))


def new_database(base: str) -> str:
    import psycopg

    name = f"kdumpkit_test_{os.getpid()}_{next(_databases)}"
    url = base.replace("postgresql+psycopg", "postgresql")
    for _ in range(50):
        try:
            with psycopg.connect(url + "/postgres", autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {name}")
            break
        except psycopg.OperationalError:
            time.sleep(0.2)
    return f"{base}/{name}"


@dataclass
class Server:
    """A running ``kdumpkit server`` and its workers, with tokens and an HTTP client."""

    backend: str
    data: Path
    db: str
    broker: str
    extra: list[str]
    commands: list[str]
    tokens: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kdumpkit", *args],
            capture_output=True,
            text=True,
            env=kdumpkit_env(),
            check=False,
            timeout=120,
        )

    def token(self, role: str, host: str | None = None, cli: bool = False) -> str:
        """A token of ``role`` (made once): by ``kdumpkit server token create`` when
        ``cli``, else in this process (each CLI run costs a second of imports)."""
        key = f"{role}:{host}"
        if key not in self.tokens:
            if cli:
                argv = ["server", "token", "create", "--data", str(self.data), "--role", role]
                if self.backend != "embedded":
                    argv += ["--db", self.db]
                if host:
                    argv += ["--host", host]
                done = self.cli(*argv)
                assert done.returncode == 0, done.stderr
                self.tokens[key] = done.stdout.strip()
            else:
                from kdumpkit.server.config import ServerConfig
                from kdumpkit.server.db import create_token, open_database

                self.data.mkdir(mode=0o700, exist_ok=True)
                url = ServerConfig(data=self.data, db_url=self.db).db_url
                self.tokens[key] = create_token(open_database(url), role, host)
        return self.tokens[key]

    def start(self) -> None:
        assert self.log is not None
        argv = [
            sys.executable,
            "-m",
            "kdumpkit",
            "server",
            "--data",
            str(self.data),
            "--listen",
            f"127.0.0.1:{self.port}",
            *FAST,
            *self.extra,
        ]
        if self.backend != "embedded":
            argv += ["--db", self.db, "--broker", self.broker, "--workers", "0"]
        else:
            argv += [a for c in self.commands for a in ("--command", c)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, env=kdumpkit_env(), stdout=log, stderr=log)
        wait_port(self.port, self.proc)

    def start_worker(self) -> subprocess.Popen[bytes]:
        assert self.log is not None
        argv = [
            sys.executable,
            "-m",
            "kdumpkit",
            "worker",
            "--data",
            str(self.data),
            "--db",
            self.db,
            "--broker",
            self.broker,
            "--lease-seconds",
            "3",
            *[a for c in self.commands for a in ("--command", c)],
        ]
        with open(self.log, "ab") as log:
            proc = subprocess.Popen(argv, env=kdumpkit_env(), stdout=log, stderr=log)
        self.workers.append(proc)
        return proc

    def stop(self) -> None:
        """End the test's processes at once: the server by SIGKILL (its embedded workers
        get SIGTERM from the kernel as it dies, and leave by themselves), the separately
        started workers by SIGTERM, all at the same time."""
        if self.proc is not None:
            stop(self.proc, signal.SIGKILL)
        for worker in self.workers:
            if worker.poll() is None:
                worker.terminate()
        for worker in self.workers:
            stop(worker)

    # --- HTTP ---------------------------------------------------------------------------

    def request(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        import httpx

        headers = dict(kw.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        cookies = kw.pop("cookies", None)
        with httpx.Client(cookies=cookies, timeout=60) as client:
            return client.request(method, self.url + path, headers=headers, **kw)

    def get(self, path: str, role: str = "read") -> Any:
        answer = self.request("GET", path, self.token(role))
        assert answer.status_code == 200, (path, answer.status_code, answer.text)
        return answer.json()

    def upload(self, path: Path, host: str = "web1") -> dict[str, Any]:
        with open(path, "rb") as body:
            answer = self.request(
                "POST", f"/api/dumps?filename={path.name}", self.token("upload", host), content=body
            )
        assert answer.status_code in (200, 201), answer.text
        return answer.json()

    def wait(self, ids: list[int], timeout: float = 90) -> list[dict[str, Any]]:
        """The dumps once each is final (done, failed, unreadable)."""
        deadline = time.monotonic() + timeout
        while True:
            dumps = [self.get(f"/api/dumps/{i}") for i in ids]
            if all(d["status"] in ("done", "failed", "unreadable") for d in dumps):
                return dumps
            if time.monotonic() > deadline:
                raise TimeoutError([(d["id"], d["status"]) for d in dumps])
            time.sleep(0.3)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_server(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[Any]:
    """``make_server(extra_args, commands, workers=1)`` -> a started :class:`Server`."""
    made: list[Server] = []

    def make(
        extra: list[str] | None = None, commands: list[str] | None = None, workers: int = 1
    ) -> Server:
        data = tmp_path / f"data{len(made)}"
        if backend == "embedded":
            db, broker = "", ""
        else:
            base = request.getfixturevalue("postgres")
            db = new_database(base)
            broker = request.getfixturevalue("redis").url
        server = Server(
            backend,
            data,
            db,
            broker,
            list(extra or []),
            list(commands or []),
            log=tmp_path / "server.log",
        )
        made.append(server)
        server.token("admin", cli=True)
        server.start()
        if backend != "embedded":
            for _ in range(workers):
                server.start_worker()
        return server

    yield make
    for server in made:
        server.stop()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        print((tmp_path / "server.log").read_text()[-5000:])


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
