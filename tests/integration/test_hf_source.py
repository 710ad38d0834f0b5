"""hf:// pulls with the real huggingface_hub client against a local Hub: the endpoints its
snapshot_download calls (model info, tree listing, HEAD/GET /resolve with a redirect to a CDN
on another origin for LFS files, Range requests), served from memory."""

from __future__ import annotations

import concurrent.futures
import hashlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from bootlab.errors import BootlabError
from bootlab.paths import Paths
from bootlab.store.fetch import Progress
from bootlab.store.layout import ModelRecord, Store
from bootlab.store.sources.hf import pull_hf

pytestmark = pytest.mark.integration
pytest.importorskip("huggingface_hub")

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


def _sha256(data: bytes) -> str:
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

    def by_sha256(self, digest: str) -> bytes:
        return next(
            data
            for files in self.commits.values()
            for data in files.values()
            if _sha256(data) == digest
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
            self._send_bytes(hub.by_sha256(parts[1]), head=head, blob=parts[1])
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
        self.send_header("Location", f"{self.server.hub.cdn}/cdn/{_sha256(data)}")
        self.send_header("X-Repo-Commit", commit)
        self.send_header("X-Linked-Etag", f'"{_sha256(data)}"')
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
        self.send_header("ETag", f'"{etag or _sha256(data)}"')
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
        sibling["lfs"] = {"size": len(data), "sha256": _sha256(data), "pointerSize": 134}
    return sibling


def _tree_entry(path: str, data: bytes) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": "file",
        "path": path,
        "size": len(data),
        "oid": _git_blob_id(data),
    }
    if path.endswith(".safetensors"):
        entry["lfs"] = {"oid": _sha256(data), "size": len(data), "pointerSize": 134}
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


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    paths = Paths(tmp_path)
    # The dev venv stands in for the image's ML venv: it has huggingface_hub. The whole venv
    # is linked, as a python linked alone would not find the venv's site-packages.
    paths.ml_venv.parent.mkdir(parents=True)
    paths.ml_venv.symlink_to(sys.prefix, target_is_directory=True)
    return paths


@pytest.fixture
def store(paths: Paths) -> Store:
    return Store(paths.state / "store", paths.state / "models")


def pull(hub: Hub, store: Store, paths: Paths, reference: str, name: str) -> ModelRecord:
    return pull_hf(reference, name, store, paths, Progress(), endpoint=hub.url)


def assert_model(store: Store, name: str, files: dict[str, bytes]) -> None:
    directory = store.models / name
    found = {
        str(path.relative_to(directory)): path.read_bytes()
        for path in directory.rglob("*")
        if path.is_file()
    }
    assert found == files
    record = store.record(name)
    assert {p: e.digest for p, e in record.files.items()} == {
        p: f"sha256:{_sha256(d)}" for p, d in files.items()
    }
    assert store.verify(name) == []
    assert list(store.staging.iterdir()) == []  # staging is cleaned up


@pytest.mark.parametrize(
    ("suffix", "commit", "files"),
    [("", MAIN, MAIN_FILES), ("@v1", V1, V1_FILES), (f"@{V1}", V1, V1_FILES)],
)
def test_pull_a_revision(
    hub: Hub, store: Store, paths: Paths, *, suffix: str, commit: str, files: dict[str, bytes]
) -> None:
    progress = Progress()
    record = pull_hf(f"hf://org/tiny{suffix}", "tiny", store, paths, progress, endpoint=hub.url)
    assert record.source == f"hf://org/tiny@{commit}"
    assert (paths.state / "models/tiny").is_dir()
    assert_model(store, "tiny", files)
    assert progress.total == sum(len(data) for data in files.values())
    assert progress.fetched >= progress.total
    # The LFS file came from the CDN, the others straight from /resolve.
    assert hub.gets(f"/cdn/{_sha256(files[BIG])}") == [None]
    assert len(hub.gets(f"/org/tiny/resolve/{commit}/sub/x.txt")) == 1


def test_repull_reuses_blobs(hub: Hub, store: Store, paths: Paths) -> None:
    pull(hub, store, paths, "hf://org/tiny", "tiny")
    blobs = sorted(store.blobs.iterdir())
    assert len(blobs) == len(MAIN_FILES)
    pull(hub, store, paths, "hf://org/tiny", "tiny")
    pull(hub, store, paths, "hf://org/tiny@main", "tiny-again")
    assert sorted(store.blobs.iterdir()) == blobs
    assert store.record("tiny").snapshot == store.record("tiny-again").snapshot
    assert_model(store, "tiny-again", MAIN_FILES)


@pytest.mark.parametrize(
    ("reference", "code", "words"),
    [
        ("hf://org/nope", 6, "no such model repo"),
        ("hf://org/tiny@nope", 6, "no revision 'nope'"),
        ("hf://org/gated", 4, "is gated"),
    ],
)
def test_repo_refused_or_missing(
    hub: Hub, store: Store, paths: Paths, *, reference: str, code: int, words: str
) -> None:
    with pytest.raises(BootlabError) as failed:
        pull(hub, store, paths, reference, "tiny")
    assert failed.value.exit_code == code
    assert words in failed.value.message
    assert "Traceback" not in failed.value.render()
    assert store.records() == []
    assert not (store.models / "tiny").exists()


def test_unreachable_hub(store: Store, paths: Paths) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(BootlabError) as failed:
        pull_hf(
            "hf://org/tiny", "tiny", store, paths, Progress(), endpoint=f"http://127.0.0.1:{port}"
        )
    assert failed.value.exit_code == 5
    assert f"cannot reach http://127.0.0.1:{port}" in failed.value.message
    assert "Traceback" not in failed.value.render()
    assert store.records() == []


@pytest.mark.parametrize(
    "reference",
    ["hf://org", "hf://org/repo/extra", "hf://org/../x", "hf://org/re po", "hf://org/a@"],
)
def test_bad_reference(store: Store, paths: Paths, reference: str) -> None:
    with pytest.raises(BootlabError) as failed:
        pull_hf(reference, "tiny", store, paths, Progress())
    assert failed.value.exit_code == 2
    assert "hf://ORG/REPO" in (failed.value.hint or "")


def test_without_the_ml_stack(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    store = Store(paths.state / "store", paths.state / "models")
    with pytest.raises(BootlabError) as failed:
        pull_hf("hf://org/tiny", "tiny", store, paths, Progress())
    assert "needs huggingface_hub from the image's ML stack" in failed.value.message


def _wait_until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_killed_pull_resumes(
    hub: Hub, store: Store, paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    children: list[subprocess.Popen[bytes]] = []

    class Recorded(subprocess.Popen[bytes]):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            children.append(self)

    monkeypatch.setattr(subprocess, "Popen", Recorded)
    big = _sha256(WEIGHTS)
    hub.hold.add(big)
    progress = Progress()
    small = [path for path in MAIN_FILES if path != BIG]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pulling = pool.submit(
            pull_hf, "hf://org/tiny", "tiny", store, paths, progress, endpoint=hub.url
        )
        assert hub.holding.wait(30)
        # The small files finish while the weights hang half way; the progress shows both.
        _wait_until(lambda: all(len(hub.gets(f"/org/tiny/resolve/{MAIN}/{p}")) for p in small))
        _wait_until(lambda: progress.done >= sum(len(MAIN_FILES[p]) for p in small))
        assert progress.total == sum(len(data) for data in MAIN_FILES.values())
        os.kill(children[0].pid, signal.SIGKILL)
        with pytest.raises(BootlabError) as failed:
            pulling.result(30)
    assert failed.value.exit_code == 5 and "interrupted (SIGKILL)" in failed.value.message
    assert store.records() == []
    hub.release.set()
    hub.hold.clear()

    pull(hub, store, paths, "hf://org/tiny", "tiny")
    assert_model(store, "tiny", MAIN_FILES)
    for path in small:  # finished before the kill: not fetched again
        assert len(hub.gets(f"/org/tiny/resolve/{MAIN}/{path}")) == 1
    assert len(hub.gets(f"/cdn/{big}")) == 2


def test_connection_dropped_mid_file_is_resumed(hub: Hub, store: Store, paths: Paths) -> None:
    # Bigger than the client's 10 MiB write chunk, so that half of it is on disk at the drop.
    files = {**MAIN_FILES, BIG: os.urandom(24 << 20)}
    hub.commits[MAIN] = files
    big = _sha256(files[BIG])
    hub.drop_once.add(big)
    pull(hub, store, paths, "hf://org/tiny", "tiny")
    assert_model(store, "tiny", files)
    gets = hub.gets(f"/cdn/{big}")
    assert len(gets) == 2 and gets[0] is None
    assert gets[1] is not None and int(gets[1].removeprefix("bytes=").split("-")[0]) > 0
