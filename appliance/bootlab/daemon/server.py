"""bootlabd's HTTP server: the systemd-passed socket (or one it binds itself), one thread per
connection, JSON in and out (uploads in: a tar stream), and errors as {error, hint, code} —
never a traceback."""

from __future__ import annotations

import argparse
import grp
import json
import logging
import os
import pwd
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from bootlab import journal
from bootlab.api import ErrorBody
from bootlab.daemon import openapi
from bootlab.daemon.body import Body, BodyError
from bootlab.daemon.routes import CALLER_UID, ROUTES, Context, Route, Streamed
from bootlab.errors import BootlabError, Exit
from bootlab.paths import Paths

log = logging.getLogger("bootlabd")

MAX_BODY = 64 * 1024
ADMIN_GROUP = "bootlab"
SD_LISTEN_FDS_START = 3


def _allowed(uid: int, gid: int) -> bool:
    """root, or a member of the admin group (the socket's mode already says so; this also
    holds when someone loosens the mode by hand)."""
    if uid == 0:
        return True
    try:
        admin_gid = grp.getgrnam(ADMIN_GROUP).gr_gid
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        return False
    return gid == admin_gid or admin_gid in os.getgrouplist(user, gid)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bootlabd"
    sys_version = ""
    server: Server

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        started = time.monotonic()
        status = 500
        self._reader: Body | None = None
        try:
            status = self._serve(method)
        except Exception:  # a bug: logged with its traceback, answered without it
            log.exception("internal error on %s %s", method, self.path)
            self._error(
                500, "internal error in bootlabd", "see: journalctl -u bootlabd", Exit.SOFTWARE
            )
        finally:
            if self._unread_body():
                self.close_connection = True
            # Method and path only: bodies carry passwords.
            log.debug(
                "%s %s -> %d in %.1f ms",
                method,
                self.path,
                status,
                (time.monotonic() - started) * 1000,
            )

    def _serve(self, method: str) -> int:
        uid, _pid, gid = self._peer()
        if not _allowed(uid, gid):
            return self._error(
                403,
                "only root and the 'bootlab' group may use the API",
                "sudo usermod -aG bootlab USER",
                77,
            )
        path, _, query = self.path.partition("?")
        if path == "/openapi.json" and method == "GET":
            return self._send(200, self.server.openapi)
        try:
            route, params = self._route(method, path)
            body = self._body(route, query)
            # Handlers that act on the caller's behalf (local imports) check who asks.
            result = route.handler(self.server.context, {**params, CALLER_UID: str(uid)}, body)
        except _RequestError as error:
            return self._error(error.status, error.message, error.hint, 2)
        except BodyError as error:
            return self._error(error.status, error.message, None, Exit.USAGE)
        except BootlabError as error:
            # The CLI's exit code travels in the body; the HTTP status says the kind.
            status = Exit.http_for(error.exit_code)
            return self._error(status, error.message, error.hint, error.exit_code)
        return self._send(200, result.model_dump(mode="json"))

    def _route(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        path_known = False
        for route in ROUTES:
            match = route.pattern.match(path)
            if not match:
                continue
            params = match.groupdict()
            for name, value in params.items():
                allowed = route.parameters.get(name, (value,))
                if value not in allowed:
                    raise _RequestError(404, f"no {name} '{value}'", f"use {', '.join(allowed)}")
            path_known = True
            if route.method == method:
                return route, params
        if path_known:
            raise _RequestError(405, f"{method} is not allowed on {path}")
        raise _RequestError(404, f"no such API path: {path}", "GET /openapi.json lists them")

    def _body(self, route: Route, query: str) -> BaseModel | Streamed[BaseModel] | None:
        if route.stream:
            # An upload: its options in the query, the body read by the handler as it comes.
            assert route.body is not None
            fields = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
            options = _validated(route.body, fields)
            self._reader = Body.of(self.headers, self.rfile, limit=None)
            return Streamed(options, self._reader)
        self._reader = Body.of(self.headers, self.rfile, limit=MAX_BODY)
        raw = self._reader.read()
        if route.body is None:
            if raw.strip() not in (b"", b"{}", b"null"):
                raise _RequestError(400, f"{route.method} {route.path} takes no body")
            return None
        try:
            data = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise _RequestError(400, "the body is not valid JSON") from None
        return _validated(route.body, data)

    def _unread_body(self) -> bool:
        """Whether part of the body is still on the socket (then no next request can be
        read from this connection)."""
        if self._reader is not None:
            return not self._reader.finished
        announced = self.headers.get("Transfer-Encoding") or self.headers.get("Content-Length")
        return announced not in (None, "", "0")

    def _peer(self) -> tuple[int, int, int]:
        raw = self.connection.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
        )
        pid, uid, gid = struct.unpack("3i", raw)
        return uid, pid, gid

    def _error(self, status: int, message: str, hint: str | None, code: int) -> int:
        body = ErrorBody(error=message, hint=hint, code=code).model_dump(mode="json")
        return self._send(status, body)

    def _send(self, status: int, document: Any) -> int:
        payload = json.dumps(document).encode() + b"\n"
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        return status

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)  # requests are logged in _dispatch, without bodies


def _validated(model: type[BaseModel], data: Any) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = []
        for item in error.errors(include_input=False, include_url=False):
            where = ".".join(str(part) for part in item["loc"]) or "body"
            problems.append(f"{where}: {item['msg']}")
        raise _RequestError(422, "invalid request body: " + "; ".join(problems)) from None


class _RequestError(Exception):
    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.hint = hint


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, listener: socket.socket, context: Context) -> None:
        super().__init__(str(context.paths.socket), Handler, bind_and_activate=False)
        self.socket = listener
        self.context = context
        self.openapi = openapi.document()


def _listener(paths: Paths, bind: Path | None) -> socket.socket:
    """The socket systemd passed (socket activation), else one bound here (tests, bench)."""
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and os.environ.get("LISTEN_FDS") == "1":
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)  # not for our children
        return socket.socket(fileno=SD_LISTEN_FDS_START)
    path = bind or paths.socket
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o660)
    listener.listen(128)
    return listener


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bootlabd", description=__doc__)
    parser.add_argument("--socket", type=Path, help="bind here when not socket-activated")
    parser.add_argument("--debug", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    journal.setup_logging("bootlabd", logging.DEBUG if args.debug else logging.INFO)
    # Every status request runs systemctl: its command lines are noise unless debugging.
    logging.getLogger("bootlab.run").setLevel(logging.DEBUG if args.debug else logging.WARNING)
    paths = Paths.from_env()
    context = Context(paths)
    context.uploads.clear()  # what an earlier daemon staged, no request can name now
    try:
        server = Server(_listener(paths, args.socket), context)
    except (OSError, BootlabError) as error:
        log.error("cannot listen: %s", error)
        return Exit.ERROR
    journal.notify("READY=1\nSTATUS=answering on " + str(args.socket or paths.socket))
    threading.Thread(target=server.context.profile, name="probe", daemon=True).start()
    log.info("bootlabd ready")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        journal.notify("STOPPING=1")
    return Exit.OK


if __name__ == "__main__":
    sys.exit(main())
