"""The CLI's side of the API: HTTP over the daemon's Unix socket, errors made readable."""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any

from bootlab.errors import BootlabError, Exit, die

TIMEOUT_S = 300.0  # a service start waits for systemd; a login for the registry


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=TIMEOUT_S)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self._path))


# Why a request on the socket failed and what to do about it: the first entry whose type the
# error is an instance of; the last catches the rest (timeouts, other OSErrors, bad HTTP).
_FAILURES: dict[type[Exception], tuple[str, str, Exit]] = {
    FileNotFoundError: (
        "bootlabd is not running here: {socket} does not exist",
        "systemctl enable --now bootlabd.socket",
        Exit.UNAVAILABLE,
    ),
    PermissionError: (
        "permission denied on {socket}: bootlab is for root and the 'bootlab' group",
        "use sudo, or ask an admin: usermod -aG bootlab $USER (then log in again)",
        Exit.NO_PERMISSION,
    ),
    ConnectionRefusedError: (
        "bootlabd does not answer on {socket}",
        "systemctl restart bootlabd.socket; see journalctl -u bootlabd",
        Exit.UNAVAILABLE,
    ),
    Exception: (
        "the request to bootlabd failed: {error}",
        "see journalctl -u bootlabd",
        Exit.UNAVAILABLE,
    ),
}


def _failure(error: Exception, socket_path: Path) -> BootlabError:
    message, hint, code = next(
        found for kind, found in _FAILURES.items() if isinstance(error, kind)
    )
    named = message.format(socket=socket_path, error=error.__class__.__name__)
    return die(named, hint=hint, exit_code=code)


def call(socket_path: Path, method: str, path: str, body: Any = None) -> Any:
    """One request; the daemon's {error, hint, code} becomes a BootlabError with that code."""
    connection = _UnixConnection(socket_path)
    payload = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if payload is not None else {}
    try:
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    except (OSError, http.client.HTTPException) as error:
        raise _failure(error, socket_path) from None
    finally:
        connection.close()
    try:
        document = json.loads(raw)
    except ValueError:
        raise die(f"bootlabd answered HTTP {response.status} with no JSON") from None
    if response.status >= 400:
        if isinstance(document, dict) and "error" in document:
            raise BootlabError(
                str(document["error"]), document.get("hint"), int(document.get("code", 1))
            )
        raise die(f"bootlabd answered HTTP {response.status}")
    return document
