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


def call(socket_path: Path, method: str, path: str, body: Any = None) -> Any:
    """One request; the daemon's {error, hint, code} becomes a BootlabError with that code."""
    connection = _UnixConnection(socket_path)
    payload = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if payload is not None else {}
    try:
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    except FileNotFoundError:
        raise die(
            f"bootlabd is not running here: {socket_path} does not exist",
            hint="systemctl enable --now bootlabd.socket",
            exit_code=Exit.UNAVAILABLE,
        ) from None
    except PermissionError:
        raise die(
            f"permission denied on {socket_path}: bootlab is for root and the 'bootlab' group",
            hint="use sudo, or ask an admin: usermod -aG bootlab $USER (then log in again)",
            exit_code=Exit.NO_PERMISSION,
        ) from None
    except ConnectionRefusedError:
        raise die(
            f"bootlabd does not answer on {socket_path}",
            hint="systemctl restart bootlabd.socket; see journalctl -u bootlabd",
            exit_code=Exit.UNAVAILABLE,
        ) from None
    except (TimeoutError, OSError, http.client.HTTPException) as error:
        raise die(
            f"the request to bootlabd failed: {error.__class__.__name__}",
            hint="see journalctl -u bootlabd",
            exit_code=Exit.UNAVAILABLE,
        ) from None
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
