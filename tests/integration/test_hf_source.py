"""hf:// pulls with the real huggingface_hub client against a local Hub: the endpoints its
snapshot_download calls (model info, tree listing, HEAD/GET /resolve with a redirect to a CDN
on another origin for LFS files, Range requests), served from memory."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bootlab.errors import BootlabError
from bootlab.paths import Paths
from bootlab.store.fetch import Progress
from bootlab.store.layout import ModelRecord, Store
from bootlab.store.sources.hf import pull_hf

from tests.support.hub import BIG, MAIN, MAIN_FILES, V1, V1_FILES, WEIGHTS, Hub, sha256_hex

pytestmark = pytest.mark.integration
pytest.importorskip("huggingface_hub")


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
        p: f"sha256:{sha256_hex(d)}" for p, d in files.items()
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
    assert hub.gets(f"/cdn/{sha256_hex(files[BIG])}") == [None]
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
    big = sha256_hex(WEIGHTS)
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
    big = sha256_hex(files[BIG])
    hub.drop_once.add(big)
    pull(hub, store, paths, "hf://org/tiny", "tiny")
    assert_model(store, "tiny", files)
    gets = hub.gets(f"/cdn/{big}")
    assert len(gets) == 2 and gets[0] is None
    assert gets[1] is not None and int(gets[1].removeprefix("bytes=").split("-")[0]) > 0
