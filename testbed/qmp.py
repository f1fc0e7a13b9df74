"""A minimal QMP (QEMU Machine Protocol) client: commands, events, timeouts.

QMP is newline-separated JSON over a socket: a greeting, then ``qmp_capabilities``
to leave negotiation mode, then ``{"execute": ..., "arguments": ...}`` requests whose
answers (``return`` or ``error``) may be preceded by asynchronous ``event`` messages.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any


class QMPError(RuntimeError):
    """QEMU answered a command with an error, closed the socket, or timed out."""


class QMPClient:
    """One QMP connection to a QEMU started with ``-qmp unix:PATH,server=on,wait=off``."""

    def __init__(self, socket_path: str, connect_timeout: float = 30.0) -> None:
        """Connect (retrying while QEMU creates the socket) and negotiate capabilities."""
        deadline = time.monotonic() + connect_timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(socket_path)
                break
            except OSError as exc:
                sock.close()
                if time.monotonic() > deadline:
                    raise QMPError(f"cannot connect to QMP socket {socket_path}: {exc}") from exc
                time.sleep(0.1)
        self._sock = sock
        self._buffer = b""
        self.pending_events: list[dict[str, Any]] = []
        greeting = self._receive(connect_timeout)
        if "QMP" not in greeting:
            raise QMPError(f"not a QMP greeting: {greeting}")
        self.execute("qmp_capabilities")

    def close(self) -> None:
        """Close the socket (QEMU keeps running)."""
        self._sock.close()

    def __enter__(self) -> QMPClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _receive(self, timeout: float) -> dict[str, Any]:
        """The next JSON message, waiting at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QMPError(f"no QMP message within {timeout:.0f}s")
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError as exc:
                raise QMPError(f"no QMP message within {timeout:.0f}s") from exc
            if not chunk:
                raise QMPError("QEMU closed the QMP connection")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def execute(self, command: str, timeout: float = 120.0, **arguments: Any) -> Any:
        """Run one command and return its ``return`` value; events seen meanwhile are kept."""
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self._sock.sendall(json.dumps(request).encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(max(deadline - time.monotonic(), 0.001))
            if "event" in message:
                self.pending_events.append(message)
            elif "error" in message:
                error = message["error"]
                raise QMPError(f"{command}: {error.get('class')}: {error.get('desc')}")
            elif "return" in message:
                return message["return"]

    def wait_event(self, name: str, timeout: float) -> dict[str, Any]:
        """Wait for event ``name`` (consuming it), at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for index, event in enumerate(self.pending_events):
                if event["event"] == name:
                    return self.pending_events.pop(index)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QMPError(f"no {name} event within {timeout:.0f}s")
            message = self._receive(remaining)
            if "event" in message:
                self.pending_events.append(message)
