"""The upload client: the standard library only, so that ``kdumpkit upload`` and
``kdumpkit collect --upload`` work from a capture kernel's minimal Python.

A dump is sent as the raw body of ``POST /api/dumps`` with its length, read from disk in
blocks (never whole in memory); a cut connection or a server error restarts the upload
from the start (the server drops the incomplete copy, and the same content is stored once,
so a retry never duplicates).  The ``dmesg.<stamp>`` saved next to a ``dump.<stamp>``
follows with ``PUT /api/dumps/{id}/dmesg``.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit


class UploadError(Exception):
    """An upload the server refused, or that kept failing; the message is one line."""


@dataclass
class Uploaded:
    """One uploaded file."""

    path: Path
    id: int
    sha256: str
    duplicate: bool


def dump_files(path: Path) -> list[Path]:
    """The dumps a path names: the file itself, or a directory's complete ``dump.*`` and
    ``vmcore*`` files (as ``collect`` leaves them; not ``.incomplete``)."""
    if not path.is_dir():
        return [path]
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and (p.name.startswith("dump.") or p.name.startswith("vmcore"))
        and not p.name.endswith((".incomplete", ".part", ".txt"))
    )


def dmesg_of(path: Path) -> Path | None:
    """The kernel log ``collect`` saved with a dump (``dmesg.<stamp>``), if any."""
    if path.name.startswith("dump."):
        candidate = path.with_name("dmesg." + path.name[len("dump.") :])
        if candidate.is_file():
            return candidate
    return None


class Client:
    """Uploads to one server with one token."""

    def __init__(self, server: str, token: str, retries: int = 5, timeout: float = 300) -> None:
        parts = urlsplit(server if "://" in server else f"http://{server}")
        if parts.scheme not in ("http", "https"):
            raise UploadError(f"{server}: not an http(s) URL")
        self.scheme = parts.scheme
        self.netloc = parts.netloc
        self.base = parts.path.rstrip("/")
        self.token = token
        self.retries = retries
        self.timeout = timeout

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.netloc, timeout=self.timeout)

    def _request(self, method: str, url: str, path: Path | None, body: bytes = b"") -> dict:
        delay = 1.0
        for attempt in range(self.retries + 1):
            conn = self._connection()
            try:
                headers = {
                    "Authorization": f"Bearer {self.token}",
                    "Content-Type": "application/octet-stream",
                }
                if path is not None:
                    with open(path, "rb") as source:
                        headers["Content-Length"] = str(os.fstat(source.fileno()).st_size)
                        conn.request(method, self.base + url, body=source, headers=headers)
                        response = conn.getresponse()
                else:
                    headers["Content-Length"] = str(len(body))
                    conn.request(method, self.base + url, body=body, headers=headers)
                    response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                if attempt == self.retries:
                    raise UploadError(f"{self.netloc}: {exc}") from None
                time.sleep(delay)
                delay = min(delay * 2, 30)
                continue
            finally:
                conn.close()
            if response.status >= 500 and response.status != 507 and attempt < self.retries:
                time.sleep(delay)
                delay = min(delay * 2, 30)
                continue
            if response.status >= 400:
                try:
                    detail = json.loads(data).get("detail")
                except ValueError:
                    detail = data.decode(errors="replace").strip()
                raise UploadError(f"server answered {response.status}: {detail}")
            return json.loads(data) if data else {}
        raise UploadError("unreachable")  # pragma: no cover

    def upload(self, path: Path) -> Uploaded:
        """Upload one dump (and its dmesg)."""
        answer = self._request("POST", f"/api/dumps?filename={quote(path.name)}", path)
        dmesg = dmesg_of(path)
        if dmesg is not None:
            self._request("PUT", f"/api/dumps/{answer['id']}/dmesg", None, dmesg.read_bytes())
        return Uploaded(path, int(answer["id"]), answer["sha256"], bool(answer["duplicate"]))
