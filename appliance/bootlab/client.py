"""The CLI's side of the API: HTTP over the daemon's Unix socket (JSON requests, and uploads
streamed as they are packed), errors made readable."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from bootlab.errors import BootlabError, Exit, die

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

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
    with _failures(socket_path, connection):
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    return _answer(response.status, raw)


def send_stream(socket_path: Path, path: str, produce: Callable[[BinaryIO], None]) -> Any:
    """POST a body that `produce` writes (a tar stream, as it packs it), with chunked transfer
    encoding: nothing is held in memory or on disk, and no length is needed up front. If
    bootlabd refuses mid-way (too big, unsafe), its answer is read all the same."""
    connection = _UnixConnection(socket_path)
    with _failures(socket_path, connection):
        connection.putrequest("POST", path)
        connection.putheader("Content-Type", "application/x-tar")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        writer = io.BufferedWriter(_Chunks(connection), buffer_size=CHUNK)
        try:
            produce(writer)
            writer.flush()
            connection.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # bootlabd stopped reading: its answer says why
        response = connection.getresponse()
        raw = response.read()
    return _answer(response.status, raw)


CHUNK = 1 << 20


class _Chunks(io.RawIOBase):
    """What is written, sent as HTTP chunks."""

    def __init__(self, connection: http.client.HTTPConnection) -> None:
        self._connection = connection

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data)
        if view.nbytes:  # three sends, no copy: a copy of each MiB cost more than sending it
            self._connection.send(b"%x\r\n" % view.nbytes)
            self._connection.send(view)
            self._connection.send(b"\r\n")
        return view.nbytes


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


@contextlib.contextmanager
def _failures(socket_path: Path, connection: http.client.HTTPConnection) -> Iterator[None]:
    """Socket and HTTP failures as errors that say what to do; the connection is closed."""
    try:
        yield
    except (OSError, http.client.HTTPException) as error:
        raise _failure(error, socket_path) from None
    finally:
        connection.close()


def _answer(status: int, raw: bytes) -> Any:
    try:
        document = json.loads(raw)
    except ValueError:
        raise die(f"bootlabd answered HTTP {status} with no JSON") from None
    if status >= 400:
        if isinstance(document, dict) and "error" in document:
            raise BootlabError(
                str(document["error"]), document.get("hint"), int(document.get("code", 1))
            )
        raise die(f"bootlabd answered HTTP {status}")
    return document
