"""The server end to end on the real 6.1 fixture dump: ingest, workers, problems, API,
tokens, faults — each against the embedded default and against PostgreSQL + Redis."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from server_support import Server, kdumpkit_env

pytestmark = pytest.mark.slow

SLOW_COMMANDS = ["foreach bt", "kmem -s", "kmem -i", "foreach files", "runq", "sys", "bt"]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def garbage(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.bin"
    path.write_bytes(os.urandom(200_000))
    return path


def truncated(tmp_path: Path, kdump61: Path) -> Path:
    path = tmp_path / "truncated.kdump"
    with open(kdump61, "rb") as source:
        path.write_bytes(source.read(1_000_000))
    return path


def test_upload_analyse_group(make_server, kdump61: Path, flat61: Path, tmp_path: Path) -> None:
    """The same crash in two formats from two hosts is one problem of two dumps; the same
    content twice is stored once; the upload CLI prints path and id; the dmesg travels."""
    server: Server = make_server()
    first = server.upload(kdump61, host="web1")
    again = server.upload(kdump61, host="web1")
    assert again["id"] == first["id"] and again["duplicate"] and first["sha256"] == sha256(kdump61)
    # collect's layout: <dir>/<stamp>/dump.<stamp> with dmesg.<stamp> next to it
    saved = tmp_path / "crash" / "202611260841"
    saved.mkdir(parents=True)
    (saved / "dump.202611260841").symlink_to(flat61)
    (saved / "dmesg.202611260841").write_text("the kernel log as collect saved it\n")
    done = server.cli(
        "upload",
        "--server",
        server.url,
        "--token",
        server.token("upload", "db2"),
        str(tmp_path / "crash"),
    )
    assert done.returncode == 0, done.stderr
    path, dump_id = done.stdout.split()
    assert path == str(saved / "dump.202611260841")
    dumps = server.wait([first["id"], int(dump_id)])
    assert [d["status"] for d in dumps] == ["done", "done"]
    assert dumps[1]["dmesg"] == "the kernel log as collect saved it\n"
    assert "sysrq_handle_crash" in dumps[0]["commands"]["bt"]
    assert dumps[0]["report"]["release"] == "6.1.0-56-cloud-amd64"
    problems = server.get("/api/problems")
    assert len(problems) == 1
    problem = problems[0]
    assert problem["count"] == 2 and sorted(problem["dumps"]) == sorted([first["id"], int(dump_id)])
    assert problem["hosts"] == ["db2", "web1"] and problem["releases"] == ["6.1.0-56-cloud-amd64"]
    assert dumps[0]["problem"] == problem["id"] == dumps[1]["problem"]
    listed = server.get("/api/dumps")
    assert {d["id"] for d in listed} == {first["id"], int(dump_id)}
    assert {"id", "status", "sha256", "host", "problem", "error"} <= set(listed[0])
    download = server.request("GET", f"/api/dumps/{first['id']}/download", server.token("read"))
    assert hashlib.sha256(download.content).hexdigest() == first["sha256"]
    stored = next(server.data.joinpath("dumps").rglob(first["sha256"]))
    assert stored.stat().st_mode & 0o777 == 0o600
    metrics = server.request("GET", "/metrics", server.token("read")).text
    assert "kdumpkit_dumps_received_total 2.0" in metrics
    assert 'kdumpkit_analyses_total{status="done"} 2.0' in metrics
    schema = server.request("GET", "/openapi.json").json()
    assert {"/api/dumps", "/api/problems", "/api/dumps/{dump_id}"} <= set(schema["paths"])


def test_unreadable_uploads(make_server, kdump61: Path, tmp_path: Path) -> None:
    """Garbage and a truncated dump are stored as unreadable with the reader's one-line
    error; the worker lives on and analyses the next dump."""
    server: Server = make_server()
    bad = [
        server.upload(garbage(tmp_path))["id"],
        server.upload(truncated(tmp_path, kdump61))["id"],
    ]
    good = server.upload(kdump61)["id"]
    junk, cut, fine = server.wait([*bad, good])
    assert junk["status"] == "unreadable"
    assert (
        junk["error"] == "garbage.bin: not a crash dump (no ELF, KDUMP or makedumpfile signature)"
    )
    assert cut["status"] == "unreadable" and "truncated" in cut["error"]
    assert "\n" not in cut["error"] and junk["problem"] is None
    assert fine["status"] == "done"


def test_access_and_limits(make_server, kdump61: Path) -> None:
    """One server with --max-upload 1M: oversized uploads refused (413, nothing kept);
    names and headers with path tricks go nowhere; no or wrong token 401; an upload token
    reads and lists nothing; a read token neither uploads nor deletes; an admin deletes."""
    server: Server = make_server(["--max-upload", "1M"])
    upload, read, admin = (
        server.token("upload", "web1"),
        server.token("read"),
        server.token("admin"),
    )
    # oversized, with its length given, then chunked (refused once the limit is passed)
    answer = server.request("POST", "/api/dumps", upload, content=open(kdump61, "rb"))
    assert answer.status_code == 413 and "limit" in answer.json()["detail"]
    answer = server.request("POST", "/api/dumps", upload, content=iter([b"\0" * 65536] * 40))
    assert answer.status_code == 413
    assert server.get("/api/dumps") == []
    assert list((server.data / "incoming").iterdir()) == []
    # path tricks: the file is named by its sha256 in the store, the shown name is tame
    for name in ("../../../../tmp/evil", "/etc/passwd", "..%2F..%2Fevil", "a/../../b"):
        answer = server.request(
            "POST",
            "/api/dumps",
            upload,
            params={"filename": name},
            headers={"X-Filename": name},
            content=name.encode(),
        )
        assert answer.status_code == 201
    answer = server.request(
        "POST", "/api/dumps", admin, params={"host": "../../etc"}, content=b"hosted"
    )
    dumps = server.get("/api/dumps")
    assert all("/" not in d["filename"] and not d["filename"].startswith(".") for d in dumps)
    assert all("/" not in d["host"] and not d["host"].startswith(".") for d in dumps)
    stored = [p for p in server.data.rglob("*") if p.is_file() and p.parent.parent.name == "dumps"]
    assert len(stored) == 5 and all(len(p.name) == 64 for p in stored)
    assert not Path("/tmp/evil").exists()
    for path in ("/api/dumps/..%2F..%2Fetc%2Fpasswd", "/api/dumps/1%2F..%2F..", "/../etc/passwd"):
        assert server.request("GET", path, read).status_code in (404, 422)
    # tokens and roles
    dump_id = dumps[0]["id"]
    paths = [
        "/api/dumps",
        "/api/problems",
        "/api/hosts",
        f"/api/dumps/{dump_id}",
        f"/api/dumps/{dump_id}/download",
        "/metrics",
    ]
    for path in paths:
        assert server.request("GET", path).status_code == 401
        assert server.request("GET", path, "kdk_read_wrong").status_code == 401
        assert server.request("GET", path, upload).status_code == 403
        assert server.request("GET", path, read).status_code == 200
    assert server.request("POST", "/api/dumps", content=b"x").status_code == 401
    assert server.request("POST", "/api/dumps", read, content=b"x" * 10).status_code == 403
    assert server.request("DELETE", f"/api/dumps/{dump_id}", read).status_code == 403
    assert server.request("DELETE", f"/api/dumps/{dump_id}", upload).status_code == 403
    assert server.request("POST", "/api/rebucket?scheme=1", read).status_code == 403
    assert (
        server.request("PUT", f"/api/dumps/{dump_id}/dmesg", read, content=b"x").status_code == 403
    )
    page = server.request("GET", "/", upload, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login"
    server.wait([dump_id])
    sha = server.get(f"/api/dumps/{dump_id}")["sha256"]
    assert server.request("DELETE", f"/api/dumps/{dump_id}", admin).status_code == 204
    assert dump_id not in {d["id"] for d in server.get("/api/dumps")}
    assert not list(server.data.joinpath("dumps").rglob(sha))


def test_store_full(make_server, kdump61: Path, flat61: Path, tmp_path: Path) -> None:
    """The store at its cap: the upload is refused with 507, nothing half-stored, the earlier
    dumps intact."""
    server: Server = make_server(["--store-cap", "20M"])
    first = server.upload(kdump61)
    answer = server.request(
        "POST", "/api/dumps", server.token("upload", "web1"), content=open(flat61, "rb")
    )
    assert answer.status_code == 507 and "full" in answer.json()["detail"]
    assert [d["id"] for d in server.get("/api/dumps")] == [first["id"]]
    assert list((server.data / "incoming").iterdir()) == []
    body = server.request("GET", f"/api/dumps/{first['id']}/download", server.token("read"))
    assert hashlib.sha256(body.content).hexdigest() == first["sha256"]


def test_rebucket_and_regression(make_server, kdump61: Path, flat61: Path) -> None:
    """Scheme 1 problems come from the stored analyses (no dump read: the files are gone);
    a problem fixed in a release older than the dumps' counts them as regressions."""
    server: Server = make_server()
    ids = [server.upload(kdump61)["id"], server.upload(flat61)["id"]]
    server.wait(ids)
    for path in server.data.joinpath("dumps").rglob("*"):
        if path.is_file():
            path.unlink()
    admin = server.token("admin")
    answer = server.request("POST", "/api/rebucket?scheme=1", admin)
    assert answer.json() == {"scheme": 1, "dumps": 2}
    v1 = server.get("/api/problems?scheme=1")
    assert len(v1) == 1 and v1[0]["scheme"] == 1 and v1[0]["count"] == 2
    assert v1[0]["signature"] == server.get(f"/api/dumps/{ids[0]}")["report"]["signature"]["sha256"]
    problem = server.get("/api/problems")[0]
    fixed = server.request(
        "POST",
        f"/api/problems/{problem['id']}/fixed",
        admin,
        json={"release": "6.1.0-50-cloud-amd64"},
    ).json()
    assert fixed["fixed_in"] == "6.1.0-50-cloud-amd64" and fixed["regressions"] == 2
    fixed = server.request(
        "POST", f"/api/problems/{problem['id']}/fixed", admin, json={"release": "6.2.0-1-amd64"}
    ).json()
    assert fixed["regressions"] == 0
    # the problem page's form, for an admin only
    form = {
        "content": b"release=6.1.0-1-cloud-amd64",
        "headers": {"Content-Type": "application/x-www-form-urlencoded"},
    }
    denied = server.request(
        "POST",
        f"/problems/{problem['id']}/fixed",
        cookies={"kdumpkit_token": server.token("read")},
        **form,
    )
    assert denied.status_code == 403
    saved = server.request(
        "POST", f"/problems/{problem['id']}/fixed", cookies={"kdumpkit_token": admin}, **form
    )
    assert saved.status_code == 303
    assert server.get(f"/api/problems/{problem['id']}")["regressions"] == 2


def _worker_tree(pid: int) -> list[int]:
    """The worker's Celery main process and all under it."""
    parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    main = parent if "worker" in Path(f"/proc/{parent}/cmdline").read_text() else pid
    found = [main]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
            if ppid in found or ppid == pid:
                found.append(int(proc.name))
    return found


def test_worker_killed_mid_analysis(make_server, kdump61: Path) -> None:
    """kill -9 of the worker analysing a dump: the dump is analysed again elsewhere, and
    completes once (one completion, one bucket)."""
    server: Server = make_server(commands=SLOW_COMMANDS, workers=2)
    dump_id = server.upload(kdump61)["id"]
    deadline = time.monotonic() + 60
    while (dump := server.get(f"/api/dumps/{dump_id}"))["status"] != "running":
        assert time.monotonic() < deadline, dump["status"]
        time.sleep(0.1)
    time.sleep(0.5)
    db = _database(server)
    worker = db(f"SELECT worker FROM dumps WHERE id = {dump_id}")[0][0]
    victims = _worker_tree(int(worker.rsplit(":", 1)[1]))
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    (done,) = server.wait([dump_id], timeout=120)
    assert done["status"] == "done"
    ((attempts, completions, second),) = db(
        f"SELECT attempts, completions, worker FROM dumps WHERE id = {dump_id}"
    )
    assert attempts >= 2 and completions == 1 and second != worker
    assert db(f"SELECT count(*) FROM buckets WHERE dump_id = {dump_id}")[0][0] == 2
    assert server.get("/api/problems")[0]["count"] == 1


def _database(server: Server):  # type: ignore[no-untyped-def]
    """A query function on the server's database."""
    from sqlalchemy import create_engine, text

    url = server.db or f"sqlite:///{server.data / 'kdumpkit.sqlite'}"
    engine = create_engine(url)

    def query(sql: str) -> list[tuple]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]

    return query


def test_server_killed_mid_upload(make_server, kdump61: Path) -> None:
    """kill -9 of the server halfway through an upload: after a restart no partial dump is
    listed or left on disk, the client's retry succeeds, nothing is duplicated."""
    server: Server = make_server()
    data = kdump61.read_bytes()
    sock = socket.create_connection(("127.0.0.1", server.port))
    head = (
        f"POST /api/dumps?filename=vmcore.kdump HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {server.token('upload', 'web1')}\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    sock.sendall(head.encode() + data[: len(data) // 2])
    deadline = time.monotonic() + 10
    while not any((server.data / "incoming").iterdir()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    sock.close()
    server.start()
    assert list((server.data / "incoming").iterdir()) == []
    assert server.get("/api/dumps") == []
    done = server.cli(
        "upload", "--server", server.url, "--token", server.token("upload", "web1"), str(kdump61)
    )
    assert done.returncode == 0, done.stderr
    again = server.upload(kdump61)
    assert again["duplicate"]
    (dump,) = server.get("/api/dumps")
    assert dump["sha256"] == sha256(kdump61)
    server.wait([dump["id"]])


@pytest.mark.parametrize("backend", ["redis-postgres"], indirect=True)  # the embedded has none
def test_redis_restarted_with_tasks_queued(
    request, backend: str, make_server, kdump61: Path, flat61: Path, tmp_path: Path
) -> None:
    """Redis restarted (losing its queue) while dumps wait for a worker: all are analysed."""
    server: Server = make_server(workers=0)
    ids = [
        server.upload(kdump61)["id"],
        server.upload(flat61)["id"],
        server.upload(garbage(tmp_path))["id"],
    ]
    redis = request.getfixturevalue("redis")
    redis.stop()
    redis.start()
    server.start_worker()
    dumps = server.wait(ids, timeout=120)
    assert [d["status"] for d in dumps] == ["done", "done", "unreadable"]


def test_cli_errors(tmp_path: Path) -> None:
    """Bad input: one line, no traceback."""

    def run(*a):
        return subprocess.run(
            [sys.executable, "-m", "kdumpkit", *a],
            capture_output=True,
            text=True,
            env=kdumpkit_env(),
        )

    done = run("server", "token", "create", "--data", str(tmp_path), "--role", "upload")
    assert (
        done.returncode == 2
        and done.stderr == "kdumpkit server: an upload token needs --host NAME\n"
    )
    done = run(
        "server",
        "token",
        "create",
        "--data",
        str(tmp_path),
        "--role",
        "read",
        "--db",
        "postgresql+psycopg://nobody@127.0.0.1:9/none",
    )
    assert done.returncode == 1 and done.stderr.startswith("kdumpkit server: database: ")
    assert len(done.stderr.splitlines()) == 1
    done = run(
        "upload", "--server", "http://127.0.0.1:9", "--token", "t", "--retries", "0", str(tmp_path)
    )
    assert (
        done.returncode == 1 and "no dumps there" in done.stderr and "Traceback" not in done.stderr
    )
    (tmp_path / "dump.1").write_bytes(b"x")
    done = run(
        "upload",
        "--server",
        "http://127.0.0.1:9",
        "--token",
        "t",
        "--retries",
        "0",
        str(tmp_path / "dump.1"),
    )
    assert done.returncode == 1 and "Connection refused" in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_collect_upload_and_spool(make_server, kdump61: Path, flat61: Path, tmp_path: Path) -> None:
    """``collect --upload URL``: the dump saved, then sent with its kernel log; the server
    groups it with the same crash sent by ``kdumpkit upload``. A spool directory that
    collect writes to (HOST/STAMP/dump.STAMP) is ingested, never an incomplete file."""
    spool = tmp_path / "spool"
    (spool / "node7" / "202611260841").mkdir(parents=True)
    server: Server = make_server(["--spool", str(spool)])
    first = server.upload(kdump61, host="web1")
    done = server.cli(
        "collect",
        "--vmcore",
        str(kdump61),
        "--dir",
        str(tmp_path / "crash"),
        "--upload",
        server.url,
        "--upload-token",
        server.token("upload", "node3"),
    )
    assert done.returncode == 0, done.stderr
    assert "uploaded" in done.stderr.splitlines()[-1]
    dumps = server.get("/api/dumps")
    collected = next(d for d in dumps if d["host"] == "node3")
    assert collected["filename"].startswith("dump.")
    first_done, collected_done = server.wait([first["id"], collected["id"]])
    (log,) = (tmp_path / "crash").rglob("dmesg.*")
    assert collected_done["dmesg"] == log.read_text()
    assert collected_done["problem"] == first_done["problem"]
    (spool / "node7" / "202611260841" / "dump.202611260841.incomplete").write_bytes(b"half")
    (spool / "node7" / "202611260841" / "dump.202611260841").symlink_to(flat61)
    deadline = time.monotonic() + 30
    while not (spooled := [d for d in server.get("/api/dumps") if d["host"] == "node7"]):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert [d["filename"] for d in spooled] == ["dump.202611260841"]
    (spooled_done,) = server.wait([spooled[0]["id"]])
    assert spooled_done["problem"] == first_done["problem"]


def test_retention_keeps_newest_per_problem(make_server, kdump61: Path, flat61: Path) -> None:
    """--keep 1: of a problem's two dumps the older one's file goes, its analysis stays."""
    server: Server = make_server(["--keep", "1"])
    older = server.upload(kdump61)["id"]
    server.wait([older])
    newer = server.upload(flat61)["id"]
    old_row, new_row = server.wait([older, newer])
    assert old_row["problem"] == new_row["problem"]
    deadline = time.monotonic() + 10
    while server.get(f"/api/dumps/{older}")["stored"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert server.get(f"/api/dumps/{newer}")["stored"]
    gone = server.request("GET", f"/api/dumps/{older}/download", server.token("read"))
    assert gone.status_code == 410
    assert server.get(f"/api/dumps/{older}")["report"]["release"] == "6.1.0-56-cloud-amd64"
    assert server.get("/api/problems")[0]["count"] == 2
    assert not list(server.data.joinpath("dumps").rglob(old_row["sha256"]))
