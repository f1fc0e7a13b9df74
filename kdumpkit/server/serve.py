"""``kdumpkit server``: the web application under uvicorn, the lease sweep, the spool
watcher and, with the embedded broker, the Celery workers of this machine (restarted if
one dies)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from kdumpkit.server.config import ServerConfig
from kdumpkit.server.db import QUEUED, Dump, utcnow
from kdumpkit.server.store import StoreError
from kdumpkit.server.tasks import QUEUE, TASK, make_celery
from kdumpkit.server.work import Context, apply_retention, spool_files, stale_dumps


def _die_with_parent() -> None:
    """In a worker child: SIGTERM when the server process dies, even by ``kill -9``."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class Supervisor:
    """Worker processes of this machine: ``kdumpkit worker`` each, restarted when one exits."""

    def __init__(self, config: ServerConfig, count: int) -> None:
        self.config = config
        self.count = count
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stopping = False

    def _start(self) -> subprocess.Popen[bytes]:
        argv = [
            sys.executable,
            "-m",
            "kdumpkit",
            "worker",
            "--data",
            str(self.config.data),
            "--db",
            self.config.db_url,
            "--broker",
            self.config.broker_url,
        ]
        env = dict(os.environ, **self.config.to_environ())
        return subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent)

    def start(self) -> None:
        """Start ``count`` workers."""
        self.procs = [self._start() for _ in range(self.count)]

    def check(self) -> None:
        """Restart workers that died."""
        for i, proc in enumerate(self.procs):
            if proc.poll() is not None and not self.stopping:
                self.procs[i] = self._start()

    def pids(self) -> list[int]:
        """The worker processes' ids (for tests and the bench)."""
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        """Stop every worker (TERM, then KILL after 10 s)."""
        self.stopping = True
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def ingest_file(ctx: Context, path: Path, host: str, enqueue: object) -> int | None:
    """Store a local file (the spool's), with the ``dmesg.<stamp>`` next to it; its id."""
    from sqlalchemy import select

    try:
        incoming = ctx.store.begin(path.stat().st_size)
        with open(path, "rb") as source:
            while chunk := source.read(1 << 20):
                incoming.write(chunk)
        sha256, _ = incoming.commit()
    except (StoreError, OSError) as exc:
        print(f"kdumpkit server: {path}: {exc}", file=sys.stderr)
        return None
    dmesg = path.with_name(path.name.replace("dump.", "dmesg.", 1))
    with ctx.sessions.begin() as session:
        existing = session.scalar(select(Dump).where(Dump.sha256 == sha256))
        if existing is not None:
            return existing.id
        dump = Dump(
            sha256=sha256,
            size=incoming.size,
            host=host,
            filename=path.name,
            status=QUEUED,
            enqueued=utcnow(),
        )
        if dmesg.is_file():
            dump.dmesg = dmesg.read_text(errors="replace")
        session.add(dump)
        session.flush()
        dump_id = dump.id
    enqueue(dump_id)  # type: ignore[operator]
    return dump_id


def watch_spool(ctx: Context, spool: Path, enqueue: object, stop: threading.Event) -> None:
    """Ingest the complete dumps ``collect`` writes under ``spool`` (``HOST/STAMP/dump.*``
    or ``STAMP/dump.*``); each file once per size and mtime."""
    seen: set[tuple[str, int, int]] = set()
    while not stop.wait(2.0):
        for path in spool_files(spool):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            key = (str(path), st.st_size, st.st_mtime_ns)
            if key in seen:
                continue
            parts = path.relative_to(spool).parts
            host = parts[0] if len(parts) >= 3 else "spool"
            from kdumpkit.server.app import safe_name

            if ingest_file(ctx, path, safe_name(host), enqueue) is not None:
                seen.add(key)


class _Server(uvicorn.Server):
    """uvicorn's server without its signal capture: it re-raises SIGTERM after shutting
    down, which would end this process before its workers are stopped."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def serve(config: ServerConfig, listen: str, workers: int, spool: Path | None = None) -> None:
    """Run until interrupted."""
    from kdumpkit.server.app import create_app

    ctx = Context.open(config)
    ctx.store.clean_incoming()
    celery = make_celery(config)

    def enqueue(dump_id: int) -> None:
        celery.send_task(TASK, args=[dump_id], queue=QUEUE)

    app = create_app(ctx, enqueue)
    supervisor = Supervisor(config, workers)
    supervisor.start()
    stop = threading.Event()

    def sweep() -> None:
        while not stop.wait(max(1.0, config.lease_seconds / 3)):
            try:
                supervisor.check()
                for dump_id in stale_dumps(ctx):
                    enqueue(dump_id)
                # retention is the server's policy (workers need not know --keep)
                apply_retention(ctx)
            except Exception as exc:  # a broker or database hiccup: next round
                print(f"kdumpkit server: sweep: {exc}", file=sys.stderr)

    threads = [threading.Thread(target=sweep, daemon=True)]
    if spool is not None:
        threads.append(
            threading.Thread(target=watch_spool, args=(ctx, spool, enqueue, stop), daemon=True)
        )
    for thread in threads:
        thread.start()
    host, _, port = listen.rpartition(":")
    try:
        print(
            f"kdumpkit server: http://{host or '127.0.0.1'}:{port}/ (data {config.data})",
            file=sys.stderr,
            flush=True,
        )
        server = _Server(
            uvicorn.Config(
                app,
                host=host or "127.0.0.1",
                port=int(port),
                log_level="warning",
                timeout_graceful_shutdown=5,
            )
        )
        signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(server, "should_exit", True))
        server.run()
    finally:
        stop.set()
        supervisor.stop()
