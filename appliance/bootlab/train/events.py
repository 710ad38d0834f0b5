"""Progress from the worker to its supervisor: one JSON object a datagram on a Unix socket
the supervisor binds (the supervisor relays it to systemd's STATUS=, the journal and
`bootlab train status`). A socket path rather than an inherited pipe: torchrun closes
inherited descriptors before it starts the ranks, and only rank 0 reports."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from typing import Any

ENV = "BOOTLAB_TRAIN_EVENTS"  # the supervisor's socket
MAX_EVENT = 1 << 16  # every event is far smaller; the supervisor reads up to this


class Events:
    def __init__(self, address: str | None) -> None:
        self._address = address
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if address else None

    @classmethod
    def from_env(cls) -> Events:
        if int(os.environ.get("RANK", "0")) != 0:
            return cls(None)  # the other ranks train; rank 0 tells
        return cls(os.environ.get(ENV) or None)

    def emit(self, event: str, **fields: Any) -> None:
        if self._socket is None or self._address is None:
            return
        data = json.dumps({"event": event, **fields}, separators=(",", ":")).encode()
        # The supervisor gone means systemd is stopping the unit: training goes on to the
        # SIGTERM it gets too.
        with contextlib.suppress(OSError):
            self._socket.sendto(data, self._address)


class Receiver:
    """The supervisor's end."""

    def __init__(self, path: str) -> None:
        if os.path.exists(path):
            os.unlink(path)
        self.path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._socket.bind(path)

    def receive(self, timeout: float) -> dict[str, Any] | None:
        self._socket.settimeout(timeout)
        try:
            data = self._socket.recv(MAX_EVENT)
        except (TimeoutError, BlockingIOError):
            return None
        try:
            event = json.loads(data)
        except ValueError:
            return None
        return event if isinstance(event, dict) else None

    def close(self) -> None:
        self._socket.close()
        if os.path.exists(self.path):
            os.unlink(self.path)
