"""The model store against a real registry (docker-registry, htpasswd): every source, the
pull engine's resume and verification, and every bad input the issue names."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from bootlab import auth
from bootlab.errors import BootlabError
from bootlab.paths import Paths
from bootlab.registry import Session
from bootlab.store import fetch, sources
from bootlab.store.fetch import Progress
from bootlab.store.layout import Store, check_name, model_store
from bootlab.store.sources import registry as registry_source

from tests.support.infra import REPO_ROOT, Registry, sh

pytestmark = pytest.mark.integration

MiB = 1 << 20


@pytest.fixture
def paths(tmp_path: Path, registry: Registry) -> Paths:
    paths = Paths(tmp_path / "root")
    auth.store(paths, registry.host, auth.Credentials(registry.username, registry.password))
    return paths


@pytest.fixture
def store(paths: Paths) -> Store:
    return model_store(paths)


def make_model(directory: Path, big: int = 3 * MiB) -> dict[str, bytes]:
    contents = {
        "config.json": b'{"architectures": ["LlamaForCausalLM"]}',
        "model.safetensors": os.urandom(big),
        "tokenizer/tokenizer.json": b'{"version": "1.0"}',
    }
    for name, data in contents.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)
    return contents


def pull(reference: str, name: str, store: Store, paths: Paths) -> tuple[object, Progress]:
    progress = Progress()
    options = sources.PullOptions(tls_verify=False)
    record = sources.pull(reference, name, store, paths, progress=progress, options=options)
    return record, progress


def assert_model(store: Store, name: str, contents: dict[str, bytes]) -> None:
    directory = store.models / name
    found = {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }
    assert found == contents
    assert store.verify(name) == []


def session(registry: Registry, repository: str) -> Session:
    credentials = auth.Credentials(registry.username, registry.password)
    return Session(registry.host, repository, credentials, tls_verify=False, push=True)


def push_layers(
    registry: Registry,
    repository: str,
    layers: list[tuple[bytes, dict[str, str]]],
    media: str = "application/vnd.oci.image.layer.v1.tar",
) -> None:
    """An image made by hand, layer by layer: for the malformed ones podman would refuse."""
    remote = session(registry, repository)
    entries = []
    for data, notes in layers:
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        registry_source._upload_bytes(remote, digest, data)
        entries.append(
            {
                "mediaType": media,
                "digest": digest,
                "size": len(data),
                **({"annotations": notes} if notes else {}),
            }
        )
    config = b"{}"
    config_digest = f"sha256:{hashlib.sha256(config).hexdigest()}"
    registry_source._upload_bytes(remote, config_digest, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": registry_source.OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": entries,
        }
    ).encode()
    remote.open(
        "PUT",
        f"/v2/{repository}/manifests/1",
        headers={"Content-Type": registry_source.OCI_MANIFEST},
        body=manifest,
        expect=(201,),
    ).close()


def tar_of(members: list[tarfile.TarInfo], payload: bytes = b"data") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for member in members:
            if member.isfile():
                member.size = len(payload)
                archive.addfile(member, io.BytesIO(payload))
            else:
                archive.addfile(member)
    return buffer.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@dataclass
class Background:
    """A pull running in a thread, for tests that break something while it runs."""

    thread: threading.Thread
    progress: Progress
    failure: list[BaseException]

    def wait_for(self, done: int) -> None:
        while self.progress.done < done and self.thread.is_alive():
            time.sleep(0.001)


def pull_in_background(reference: str, name: str, store: Store, paths: Paths) -> Background:
    progress = Progress()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            sources.pull(
                reference,
                name,
                store,
                paths,
                progress=progress,
                options=sources.PullOptions(tls_verify=False),
            )
        except BaseException as error:  # inspected by the test
            failure.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return Background(thread, progress, failure)


# Sources -------------------------------------------------------------------------------------


def test_docker_image_with_tar_layers(
    tmp_path: Path, registry: Registry, store: Store, paths: Paths
) -> None:
    """RHEL AI's shape: files under /models in ordinary image layers, built by podman."""
    context = tmp_path / "context"
    contents = make_model(context / "models")
    (context / "Containerfile").write_text("FROM scratch\nCOPY models/ /models/\n")
    image = f"{registry.host}/models/granite-tar:1"
    sh("podman", "build", "-q", "-t", image, str(context))
    sh(
        "podman",
        "push",
        "-q",
        "--tls-verify=false",
        f"--creds={registry.username}:{registry.password}",
        image,
    )
    record, progress = pull(f"docker://{image}", "granite", store, paths)
    assert_model(store, "granite", contents)
    assert progress.fetched == progress.total > 0
    assert record.manifest and record.source == f"docker://{image}"  # type: ignore[attr-defined]
    assert not list(store.partial.iterdir())  # the layer tar is gone once unpacked
    # Pulled again: nothing crosses the network, the files are the same blobs.
    _, again = pull(f"docker://{image}", "granite-again", store, paths)
    assert again.fetched == 0
    assert os.path.samefile(
        store.models / "granite/model.safetensors", store.models / "granite-again/model.safetensors"
    )


def test_push_then_pull_an_oci_artifact(
    tmp_path: Path, registry: Registry, store: Store, paths: Paths
) -> None:
    contents = make_model(tmp_path / "checkpoint")
    pull(str(tmp_path / "checkpoint"), "trained", store, paths)
    assert_model(store, "trained", contents)
    reference = f"docker://{registry.host}/models/trained:v1"
    digest = registry_source.push(
        "trained", reference, store, paths, tls_verify=False, progress=Progress()
    )
    manifest = json.loads(
        sh(
            "skopeo",
            "inspect",
            "--raw",
            "--tls-verify=false",
            f"--creds={registry.username}:{registry.password}",
            reference,
        ).stdout
    )
    titles = sorted(layer["annotations"][registry_source.TITLE] for layer in manifest["layers"])
    assert titles == sorted(contents)
    other = model_store(Paths(tmp_path / "elsewhere"))
    other_paths = Paths(tmp_path / "elsewhere")
    auth.store(other_paths, registry.host, auth.Credentials(registry.username, registry.password))
    _, progress = pull(f"oci://{registry.host}/models/trained@{digest}", "copy", other, other_paths)
    assert_model(other, "copy", contents)
    assert progress.fetched == sum(len(data) for data in contents.values())
    # One copy on disk: the blobs are the files, the model directory links them.
    assert other.footprint() <= sum(len(d) for d in contents.values()) + 3 * 4096


def test_local_directory_and_single_file(tmp_path: Path, store: Store, paths: Paths) -> None:
    contents = make_model(tmp_path / "local")
    pull(str(tmp_path / "local"), "local", store, paths)
    assert_model(store, "local", contents)
    (tmp_path / "tiny.gguf").write_bytes(b"GGUF" + os.urandom(1000))
    pull(f"file://{tmp_path / 'tiny.gguf'}", "tiny", store, paths)
    assert (store.models / "tiny" / "tiny.gguf").read_bytes()[:4] == b"GGUF"
    # The original stays editable: the store holds its own copy (or reflink), not a link.
    assert not os.path.samefile(tmp_path / "local/config.json", store.models / "local/config.json")


def test_remove_and_gc_free_exactly_what_is_unused(
    tmp_path: Path, store: Store, paths: Paths
) -> None:
    make_model(tmp_path / "a")
    pull(str(tmp_path / "a"), "a", store, paths)
    pull(str(tmp_path / "a"), "b", store, paths)
    store.remove("a")
    assert store.gc().blobs == 0  # b still uses every blob
    store.remove("b")
    report = store.gc()
    assert report.blobs == 3 and report.bytes_freed >= 3 * MiB
    assert not list(store.blobs.iterdir())


# Bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "fragment"),
    [
        ([member("/etc/passwd")], "outside the model directory"),
        ([member("models/../../escape")], "outside the model directory"),
        ([member("dev", tarfile.CHRTYPE)], "device, fifo or other special file"),
        ([member("fifo", tarfile.FIFOTYPE)], "device, fifo or other special file"),
        (
            [member("x", tarfile.REGTYPE), member("link", tarfile.SYMTYPE, "../../etc/shadow")],
            "escapes the model directory",
        ),
        ([member("abs", tarfile.SYMTYPE, "/etc/shadow")], "points outside"),
    ],
    ids=["absolute", "dotdot", "chardev", "fifo", "symlink-escape", "symlink-absolute"],
)
def test_malicious_layers_are_refused_and_nothing_is_published(
    registry: Registry, store: Store, paths: Paths, members: list[tarfile.TarInfo], fragment: str
) -> None:
    shape = repr([(m.name, m.type, m.linkname) for m in members]).encode()
    repository = f"evil/{hashlib.sha256(shape).hexdigest()[:12]}"
    push_layers(registry, repository, [(tar_of(members), {})])
    with pytest.raises(BootlabError) as refused:
        pull(f"docker://{registry.host}/{repository}:1", "evil", store, paths)
    assert fragment in refused.value.message and refused.value.exit_code == 7
    assert not (store.models / "evil").exists() and store.records() == []


def test_truncated_layer_is_refused(registry: Registry, store: Store, paths: Paths) -> None:
    whole = tar_of([member("model.bin")], payload=os.urandom(100_000))
    push_layers(registry, "broken/truncated", [(whole[: len(whole) // 2], {})])
    with pytest.raises(BootlabError) as refused:
        pull(f"docker://{registry.host}/broken/truncated:1", "t", store, paths)
    assert refused.value.exit_code == 7 and "truncated or corrupt" in refused.value.message
    assert store.records() == []


def test_digest_mismatch_is_refused_and_nothing_kept(
    tmp_path: Path, registry: Registry, store: Store, paths: Paths
) -> None:
    data = os.urandom(200_000)
    push_layers(registry, "broken/mismatch", [(data, {registry_source.TITLE: "w.bin"})])
    digest = hashlib.sha256(data).hexdigest()
    # Corrupt the blob where docker-registry keeps it: the registry serves the wrong bytes.
    blob = next(
        Path("/tmp").glob(
            f"pytest-of-*/pytest-*/registry*/data/docker/registry/v2/"
            f"blobs/sha256/{digest[:2]}/{digest}/data"
        ),
        None,
    )
    assert blob is not None, "registry storage not found"
    blob.write_bytes(b"X" + data[1:])
    with pytest.raises(BootlabError) as refused:
        pull(f"docker://{registry.host}/broken/mismatch:1", "m", store, paths)
    assert refused.value.exit_code == 7 and "arrived with content" in refused.value.message
    assert store.records() == [] and not store.has_blob(f"sha256:{digest}")
    assert all(p.stat().st_size == 0 for p in store.partial.iterdir())


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("docker://{host}/no/such:1", (6, "not found")),
        ("docker://quay", (2, "not a full image reference")),
        ("docker://127.0.0.1:9/a/b:1", (5, "not reachable")),
        ("relative/path", (2, "not an absolute path")),
        ("/nonexistent/model", (2, "neither a model reference nor a path")),
        ("/", (2, "system directory")),
    ],
)
def test_bad_references(
    registry: Registry, store: Store, paths: Paths, reference: str, expected: tuple[int, str]
) -> None:
    with pytest.raises(BootlabError) as refused:
        pull(reference.format(host=registry.host), "m", store, paths)
    assert (refused.value.exit_code, expected[1] in refused.value.message) == (expected[0], True)


@pytest.mark.parametrize("name", ["a/b", "../up", "", ".", "x" * 200, "sp ace"])
def test_model_names_with_separators_are_refused(store: Store, paths: Paths, name: str) -> None:
    with pytest.raises(BootlabError) as refused:
        check_name(name)
    assert refused.value.exit_code == 2 and "not a model name" in refused.value.message


def test_unauthorized_without_login(tmp_path: Path, registry: Registry) -> None:
    paths = Paths(tmp_path / "nologin")
    with pytest.raises(BootlabError) as refused:
        pull(f"docker://{registry.host}/models/granite-tar:1", "m", model_store(paths), paths)
    assert refused.value.exit_code == 4 and "bootlab login" in (refused.value.hint or "")


def test_disk_space_is_checked_before_the_first_byte(
    tmp_path: Path, registry: Registry, paths: Paths
) -> None:
    push_layers(registry, "big/model", [(os.urandom(24 * MiB), {registry_source.TITLE: "w"})])
    small = tmp_path / "small"
    small.mkdir()
    sh("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(small))
    try:
        store = Store(small / "store", small / "models")
        with pytest.raises(BootlabError) as refused:
            pull(f"docker://{registry.host}/big/model:1", "big", store, paths)
        assert refused.value.exit_code == 8
        message = refused.value.message
        assert "needs 24.0 MiB" in message and "16.0 MiB are free" in message
        assert not list(store.partial.glob("*[0-9a-f]"))
    finally:
        sh("umount", str(small))


# The engine: resume, registry gone, shared downloads ------------------------------------------


def test_registry_gone_mid_download_then_resume(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry that dies mid-pull: a clear error, the partial kept; the next pull
    fetches only what is missing and verifies."""
    from tests.support.infra import _registry

    monkeypatch.setattr(fetch, "BLOCK", 1 * MiB)
    monkeypatch.setattr(fetch, "CHUNK", 2 * MiB)
    monkeypatch.setattr(fetch, "ATTEMPTS", 2)
    monkeypatch.setattr(fetch, "BACKOFF_S", 0.05)
    data = os.urandom(40 * MiB)
    (tmp_path / "flaky").mkdir()
    with _registry(tmp_path / "flaky", tls=False) as flaky:
        paths = Paths(tmp_path / "root")
        auth.store(paths, flaky.host, auth.Credentials(flaky.username, flaky.password))
        store = model_store(paths)
        push_layers(flaky, "m/big", [(data, {registry_source.TITLE: "weights.bin"})])
        monkeypatch.setattr(fetch, "WINDOW_BYTES", 4 * MiB)
        slow = pull_in_background(f"docker://{flaky.host}/m/big:1", "big", store, paths)
        slow.wait_for(10 * MiB)
        processes = subprocess.run(
            ["pgrep", "-f", str(tmp_path / "flaky")], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in processes:
            os.kill(int(pid), signal.SIGKILL)
        slow.thread.join(60)
        failure = slow.failure
        assert failure and isinstance(failure[0], BootlabError)
        assert failure[0].exit_code == 5 and "resumes" in (failure[0].hint or "")
        assert store.records() == []
    with _registry(
        tmp_path / "flaky",
        tls=False,
        port=int(flaky.host.rsplit(":", 1)[1]),
        credentials=(flaky.username, flaky.password),
    ) as back:
        assert back.host == flaky.host
        _, resumed = pull(f"docker://{back.host}/m/big:1", "big", store, paths)
        assert resumed.fetched < len(data) - 5 * MiB
        assert store.verify("big") == []


KILLED = """
import sys
from pathlib import Path
from bootlab.paths import Paths
from bootlab.store import fetch, sources
from bootlab.store.layout import model_store
fetch.BLOCK = 1 << 20
paths = Paths(Path(sys.argv[1]))
sources.pull(sys.argv[2], "big", model_store(paths), paths, progress=fetch.Progress(),
             options=sources.PullOptions(tls_verify=False))
"""


def test_kill_9_mid_pull_then_resume_verifies(
    tmp_path: Path, registry: Registry, paths: Paths, store: Store
) -> None:
    data = os.urandom(64 * MiB)
    push_layers(registry, "m/killed", [(data, {registry_source.TITLE: "weights.bin"})])
    reference = f"docker://{registry.host}/m/killed:1"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(paths.root), reference],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "appliance")},
    )
    marks = store.partial / (hashlib.sha256(data).hexdigest() + ".chunks")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if marks.exists() and marks.read_bytes()[8:].count(1) >= 32:
            break
        time.sleep(0.002)
    child.send_signal(signal.SIGKILL)
    child.wait()
    done_before = marks.read_bytes()[8:].count(1)
    assert 0 < done_before < 64, "the kill came too late or too early to test a resume"
    _, resumed = pull(reference, "big", store, paths)
    assert resumed.fetched <= len(data) - done_before * MiB + 1
    assert (store.models / "big/weights.bin").read_bytes() == data
    assert store.verify("big") == []


def test_two_pulls_of_one_model_share_one_download(
    tmp_path: Path, registry: Registry, store: Store, paths: Paths
) -> None:
    data = os.urandom(32 * MiB)
    push_layers(registry, "m/shared", [(data, {registry_source.TITLE: "w.bin"})])
    reference = f"docker://{registry.host}/m/shared:1"
    progresses = [Progress(), Progress()]
    threads = [
        threading.Thread(
            target=sources.pull,
            args=(reference, f"s{i}", store, paths),
            kwargs={"progress": progresses[i], "options": sources.PullOptions(tls_verify=False)},
        )
        for i in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(p.fetched for p in progresses) == len(data)
    assert os.path.samefile(store.models / "s0/w.bin", store.models / "s1/w.bin")


def test_disk_full_mid_download_is_clear_and_resumable(
    tmp_path: Path, registry: Registry, paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Space that vanishes after the check (another writer): exit 8, no model, and the part
    already fetched stays for the next pull."""
    monkeypatch.setattr(fetch, "BLOCK", 1 * MiB)
    monkeypatch.setattr(fetch, "CHUNK", 2 * MiB)
    data = os.urandom(24 * MiB)
    push_layers(registry, "big/full", [(data, {registry_source.TITLE: "w"})])
    small = tmp_path / "small"
    small.mkdir()
    sh("mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(small))
    try:
        store = Store(small / "store", small / "models")
        puller = pull_in_background(f"docker://{registry.host}/big/full:1", "full", store, paths)
        puller.wait_for(4 * MiB)
        with (small / "hog").open("wb", buffering=0) as hog:  # another writer takes the rest
            try:
                while True:
                    hog.write(b"\0" * MiB)
            except OSError:
                pass
        puller.thread.join(60)
        failure = puller.failure
        assert failure, "the pull finished before the disk filled"
        assert isinstance(failure[0], BootlabError) and failure[0].exit_code == 8
        assert "disk is full" in failure[0].message and "resumes" in (failure[0].hint or "")
        assert store.records() == [] and not (store.models / "full").exists()
        (small / "hog").unlink()
        _, resumed = pull(f"docker://{registry.host}/big/full:1", "full", store, paths)
        assert resumed.fetched < len(data)
        assert store.verify("full") == []
    finally:
        sh("umount", str(small))


def test_direct_blocks_and_a_cached_tail_make_the_exact_blob(
    registry: Registry, paths: Paths, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whole blocks go to disk with O_DIRECT, the unaligned last one through the page cache:
    one file, byte for byte, flushed before it became a blob."""
    monkeypatch.setattr(fetch, "BLOCK", 1 * MiB)
    monkeypatch.setattr(fetch, "CHUNK", 2 * MiB)
    data = os.urandom(5 * MiB + 1234)
    push_layers(registry, "m/odd", [(data, {registry_source.TITLE: "w.bin"})])
    flags: list[int] = []
    synced: list[int] = []
    real_open, real_sync = os.open, os.fdatasync

    def spying_open(path: object, flag: int, *args: object, **kwargs: object) -> int:
        flags.append(flag)
        return real_open(path, flag, *args, **kwargs)  # type: ignore[arg-type]

    def spying_sync(descriptor: int) -> None:
        synced.append(descriptor)
        real_sync(descriptor)

    monkeypatch.setattr(fetch.os, "open", spying_open)
    monkeypatch.setattr(fetch.os, "fdatasync", spying_sync)
    pull(f"docker://{registry.host}/m/odd:1", "odd", store, paths)
    assert any(flag & os.O_DIRECT for flag in flags), "the blocks did not go with O_DIRECT"
    assert synced, "the blob was published without a flush"
    assert (store.models / "odd/w.bin").read_bytes() == data
    assert store.verify("odd") == []


def test_a_filesystem_refusing_o_direct_gets_cached_writes(
    registry: Registry, paths: Paths, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where O_DIRECT writes fail with EINVAL (some filesystems, odd block sizes), the pull
    writes through the page cache instead and the blob is the same."""
    import fcntl

    monkeypatch.setattr(fetch, "BLOCK", 1 * MiB)
    monkeypatch.setattr(fetch, "CHUNK", 2 * MiB)
    data = os.urandom(8 * MiB)
    push_layers(registry, "m/nodirect", [(data, {registry_source.TITLE: "w.bin"})])
    refused: list[int] = []
    real_pwrite = os.pwrite

    def refusing_pwrite(descriptor: int, buffer: object, offset: int) -> int:
        if fcntl.fcntl(descriptor, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(offset)
            raise OSError(22, "Invalid argument")
        return real_pwrite(descriptor, buffer, offset)  # type: ignore[arg-type]

    monkeypatch.setattr(fetch.os, "pwrite", refusing_pwrite)
    descriptors = len(os.listdir("/proc/self/fd"))
    pull(f"docker://{registry.host}/m/nodirect:1", "nodirect", store, paths)
    assert refused, "no O_DIRECT write was tried: the test proved nothing"
    assert len(os.listdir("/proc/self/fd")) == descriptors  # the O_DIRECT one closed too
    assert (store.models / "nodirect/w.bin").read_bytes() == data
    assert store.verify("nodirect") == []


class _StallingProxy:
    """A TCP proxy to the registry whose first blob download stops sending mid-way and
    stays open: the connection is alive but nothing comes (a stall, not an error)."""

    def __init__(self, target: str) -> None:
        import socket

        self.target = target.rsplit(":", 1)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stalled = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection((self.target[0], int(self.target[1])))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, source: object, sink: object, downstream: bool) -> None:
        sent = 0
        try:
            while data := source.recv(65536):  # type: ignore[attr-defined]
                if downstream and not self.stalled.is_set() and sent > 2 * MiB:
                    self.stalled.set()
                    time.sleep(3600)  # keep the connection open, send nothing
                sink.sendall(data)  # type: ignore[attr-defined]
                sent += len(data)
        except OSError:
            pass


def test_a_stalled_connection_is_detected_and_retried(
    tmp_path: Path, registry: Registry, paths: Paths, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(16 * MiB)
    push_layers(registry, "m/stall", [(data, {registry_source.TITLE: "w.bin"})])
    proxy = _StallingProxy(registry.host)
    host = f"127.0.0.1:{proxy.port}"
    auth.store(paths, host, auth.Credentials(registry.username, registry.password))
    original = Session.__init__

    def short_timeout(self: Session, *args: object, **kwargs: object) -> None:
        kwargs["timeout"] = 1.0  # 30 s in real use; a second here
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Session, "__init__", short_timeout)
    started = time.monotonic()
    _, progress = pull(f"docker://{host}/m/stall:1", "stall", store, paths)
    assert proxy.stalled.is_set(), "the proxy never stalled: the test proved nothing"
    assert (store.models / "stall/w.bin").read_bytes() == data
    assert time.monotonic() - started < 30
    assert progress.fetched >= len(data)
