#!/usr/bin/env python3
"""Load on ``kdumpkit server``: concurrent clients upload distinct dumps; printed: ingest
MB/s, dumps analysed per minute per worker process, p50/p95 time from the start of an
upload to its dump shown in a problem (or final, for unreadable ones), with 1 and 2
workers; every upload accounted for (each has an id, each id is final, ids are distinct).

Each upload is the real 6.1 fixture (kdump-compressed, 17 MB) with a unique tail of a
few bytes, so every one is new content (the reader ignores what follows the dump).  The
server is the embedded default (SQLite, Celery's SQLAlchemy transport, workers started by
the server) in a temporary directory, removed afterwards.

    python3 bench/server_load.py [--clients 20] [--uploads 200] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("KDUMPKIT_FIXTURES", ROOT.parent / "shared" / "fixtures"))
DUMP = FIXTURES / "linux-6.1.0-56-cloud-amd64-kdump" / "vmcore.kdump"
FINAL = {"done", "failed", "unreadable"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def body(data: bytes, index: int) -> Iterator[bytes]:
    """The fixture in 1 MiB pieces, then this upload's unique tail."""
    view = memoryview(data)
    for start in range(0, len(data), 1 << 20):
        yield bytes(view[start : start + (1 << 20)])
    yield f"\nkdumpkit-bench-{index:06d}\n".encode()


def run(workers: int, clients: int, uploads: int, data: bytes) -> dict[str, float]:
    import httpx

    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    workdir = Path(tempfile.mkdtemp(prefix="kdumpkit-bench-server-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    kdumpkit = [sys.executable, "-m", "kdumpkit"]

    def token(role: str, host: str | None = None) -> str:
        argv = [*kdumpkit, "server", "token", "create", "--data", str(workdir), "--role", role]
        argv += ["--host", host] if host else []
        return subprocess.run(
            argv, env=env, check=True, capture_output=True, text=True
        ).stdout.strip()

    read = token("read")
    upload_tokens = [token("upload", f"host{i:02d}") for i in range(clients)]
    log = open(workdir / "server.log", "wb")
    server = subprocess.Popen(
        [
            *kdumpkit,
            "server",
            "--data",
            str(workdir),
            "--listen",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/openapi.json", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start; see " + str(workdir)) from None
                time.sleep(0.2)
        started: dict[int, float] = {}
        shown: dict[int, float] = {}
        stop = threading.Event()

        def monitor() -> None:
            while not stop.is_set():
                try:
                    rows = httpx.get(
                        url + "/api/dumps", timeout=60, headers={"Authorization": f"Bearer {read}"}
                    ).json()
                except httpx.HTTPError:
                    continue
                now = time.monotonic()
                for row in rows:
                    if (
                        row["id"] not in shown
                        and row["status"] in FINAL
                        and (row["problem"] is not None or row["status"] != "done")
                    ):
                        shown[row["id"]] = now
                time.sleep(0.25)

        def one(index: int) -> tuple[int, float]:
            tok = upload_tokens[index % clients]
            t0 = time.monotonic()
            answer = httpx.post(
                url + f"/api/dumps?filename=bench-{index}.kdump",
                content=body(data, index),
                headers={"Authorization": f"Bearer {tok}", "Content-Length": str(len(data) + 23)},
                timeout=600,
            )
            answer.raise_for_status()
            return answer.json()["id"], t0

        watcher = threading.Thread(target=monitor, daemon=True)
        watcher.start()
        t_start = time.monotonic()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(one, range(uploads)))
        t_uploaded = time.monotonic()
        for dump_id, t0 in results:
            started[dump_id] = t0
        ids = [dump_id for dump_id, _ in results]
        assert len(set(ids)) == uploads, "an upload was stored twice or merged"
        while len(set(ids) & set(shown)) < uploads:
            if server.poll() is not None:
                raise SystemExit("the server died; see " + str(workdir))
            time.sleep(0.5)
        t_done = max(shown[i] for i in ids)
        stop.set()
        statuses = httpx.get(
            url + "/api/dumps", timeout=60, headers={"Authorization": f"Bearer {read}"}
        ).json()
        by_status: dict[str, int] = {}
        for row in statuses:
            by_status[row["status"]] = by_status.get(row["status"], 0) + 1
        latencies = sorted(shown[i] - started[i] for i in ids)
        megabytes = uploads * (len(data) + 23) / 1e6
        return {
            "ingest_mb_s": megabytes / (t_uploaded - t_start),
            "per_min_per_worker": uploads / ((t_done - t_start) / 60) / workers,
            "p50": statistics.median(latencies),
            "p95": latencies[int(0.95 * (len(latencies) - 1))],
            "upload_s": t_uploaded - t_start,
            "total_s": t_done - t_start,
            "accounted": len(set(ids) & set(shown)),
            "statuses": by_status,  # type: ignore[dict-item]
        }
    finally:
        server.terminate()
        server.wait(30)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--uploads", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dump", type=Path, default=DUMP)
    args = parser.parse_args()
    if not args.dump.exists():
        print(f"server_load: {args.dump} not present (set KDUMPKIT_FIXTURES)", file=sys.stderr)
        return 2
    data = args.dump.read_bytes()
    print(
        f"server load: {args.clients} clients, {args.uploads} uploads of "
        f"{len(data) / 1e6:.1f} MB, embedded server, cpus={os.cpu_count()}"
    )
    for workers in args.workers:
        r = run(workers, args.clients, args.uploads, data)
        print(
            f"workers={workers}: ingest {r['ingest_mb_s']:.1f} MB/s "
            f"({r['upload_s']:.1f} s for all uploads), "
            f"{r['per_min_per_worker']:.1f} dumps analysed/min/worker, "
            f"upload->problem p50 {r['p50']:.1f} s p95 {r['p95']:.1f} s, "
            f"all {r['accounted']}/{args.uploads} accounted for {r['statuses']} "
            f"in {r['total_s']:.1f} s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
