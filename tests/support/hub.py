"""A local Hugging Face Hub for tests: the endpoints huggingface_hub's snapshot_download
calls (model info, tree listing, HEAD/GET /resolve with a redirect to a CDN on another
origin for LFS files, Range requests), served from memory. Shared by the integration tier
(the client in the dev venv) and the system tier (the client in the image's ML venv)."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

BIG = "model.safetensors"
WEIGHTS = os.urandom(256 << 10)
MAIN_FILES = {
    "config.json": b'{"model_type": "tiny", "hidden_size": 8}\n',
    BIG: WEIGHTS,
    "tokenizer.json": json.dumps({"vocab": {str(i): i for i in range(200)}}).encode(),
    "sub/x.txt": b"nested\n",
}
V1_FILES = {**MAIN_FILES, "config.json": b'{"model_type": "tiny", "hidden_size": 4}\n'}
V1_FILES[BIG] = os.urandom(64 << 10)
MAIN, V1 = "a" * 40, "b" * 40


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Hub:
    """The fake Hub's content and what the tests steer and observe."""

    url: str = ""
    cdn: str = ""
    revisions: dict[str, str] = field(default_factory=lambda: {"main": MAIN, "v1": V1})
    commits: dict[str, dict[str, bytes]] = field(
        default_factory=lambda: {MAIN: MAIN_FILES, V1: V1_FILES}
    )
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    hold: set[str] = field(default_factory=set)  # CDN blobs to stop half way through
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    drop_once: set[str] = field(default_factory=set)  # CDN blobs whose first GET breaks off

    def gets(self, path: str) -> list[str | None]:
        return [ranges for method, seen, ranges in self.requests if (method, seen) == ("GET", path)]

    def bysha256_hex(self, digest: str) -> bytes:
        return next(
            data
            for files in self.commits.values()
            for data in files.values()
            if sha256_hex(data) == digest
        )


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def _route(self, *, head: bool) -> None:
        hub = self.server.hub
        path = urlsplit(self.path).path
        hub.requests.append((self.command, path, self.headers.get("Range")))
        parts = [unquote(part) for part in path.strip("/").split("/")]
        if parts[0] == "cdn":
            self._send_bytes(hub.bysha256_hex(parts[1]), head=head, blob=parts[1])
            return
        api = parts[:2] == ["api", "models"]
        repo = "/".join(parts[2:4] if api else parts[:2])
        if repo != "org/tiny":
            self._fail(*((403, "GatedRepo") if repo == "org/gated" else (404, "RepoNotFound")))
            return
        rest = parts[4:] if api else parts[2:]
        if api and not rest:
            rest = ["revision", "main"]
        commit = hub.revisions.get(rest[1], rest[1] if rest[1] in hub.commits else None)
        if commit is None:
            self._fail(404, "RevisionNotFound")
            return
        files = hub.commits[commit]
        if api and rest[0] == "revision":
            self._send_json(
                {"id": repo, "sha": commit, "siblings": [_sibling(p, d) for p, d in files.items()]}
            )
        elif api and rest[0] == "tree":
            self._send_json([_tree_entry(p, d) for p, d in files.items()])
        elif rest[0] == "resolve" and (name := "/".join(rest[2:])) in files:
            self._resolve(files[name], commit, lfs=name.endswith(".safetensors"), head=head)
        else:
            self._fail(404, "EntryNotFound")

    def _resolve(self, data: bytes, commit: str, *, lfs: bool, head: bool) -> None:
        if not lfs:
            self._send_bytes(data, head=head, etag=_git_blob_id(data), commit=commit)
            return
        # As the Hub does: LFS files live on a CDN; the redirect carries their metadata.
        self.send_response(302)
        self.send_header("Location", f"{self.server.hub.cdn}/cdn/{sha256_hex(data)}")
        self.send_header("X-Repo-Commit", commit)
        self.send_header("X-Linked-Etag", f'"{sha256_hex(data)}"')
        self.send_header("X-Linked-Size", str(len(data)))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send_bytes(
        self,
        data: bytes,
        *,
        head: bool,
        etag: str | None = None,
        commit: str | None = None,
        blob: str | None = None,
    ) -> None:
        hub = self.server.hub
        start = 0
        if ranges := self.headers.get("Range"):
            start = int(ranges.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{etag or sha256_hex(data)}"')
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.end_headers()
        if head:
            return
        body = data[start:]
        try:
            if blob in hub.drop_once:
                hub.drop_once.discard(blob)
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True  # mid-file: the client must resume with Range
                return
            if blob in hub.hold:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                hub.holding.set()
                hub.release.wait(30)
            self.wfile.write(body[len(body) // 2 if blob in hub.hold else 0 :])
        except OSError:
            self.close_connection = True  # the client is gone (killed on purpose)

    def _send_json(self, document: object) -> None:
        body = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _fail(self, status: int, code: str) -> None:
        body = json.dumps({"error": code}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _sibling(path: str, data: bytes) -> dict[str, Any]:
    sibling: dict[str, Any] = {"rfilename": path, "size": len(data), "blobId": _git_blob_id(data)}
    if path.endswith(".safetensors"):
        sibling["lfs"] = {"size": len(data), "sha256": sha256_hex(data), "pointerSize": 134}
    return sibling


def _tree_entry(path: str, data: bytes) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": "file",
        "path": path,
        "size": len(data),
        "oid": _git_blob_id(data),
    }
    if path.endswith(".safetensors"):
        entry["lfs"] = {"oid": sha256_hex(data), "size": len(data), "pointerSize": 134}
    return entry


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, hub: Hub) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hub = hub

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def hub() -> Iterator[Hub]:
    state = Hub()
    servers = [_Server(state), _Server(state)]  # the Hub, and its CDN on another origin
    state.url, state.cdn = servers[0].url, servers[1].url
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    state.release.set()
    for server in servers:
        server.shutdown()
        server.server_close()
