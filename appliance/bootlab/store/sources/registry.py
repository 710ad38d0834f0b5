"""docker:// and oci:// models: images in a registry, as RHEL AI ships them (tar layers of
model files) or as OCI artifacts (one layer per file, named by its title annotation).
`push` makes the latter from a model in the store."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootlab import auth, files
from bootlab.errors import Exit, die
from bootlab.paths import Paths
from bootlab.registry import Session, normalize_registry
from bootlab.store.fetch import Progress, fetch_blob
from bootlab.store.layout import FileEntry, ModelRecord, Store, check_digest
from bootlab.store.unpack import unpack_layer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEXES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
TITLE = "org.opencontainers.image.title"
MODEL_CONFIG = "application/vnd.bootlab.model.config.v1+json"
MODEL_FILE = "application/vnd.bootlab.model.file.v1"
_TAR_TYPES = ("tar", "tar+gzip", "tar.gzip")
PARALLEL = 6  # HTTP requests in flight per pull, across its blobs

_REFERENCE = re.compile(
    r"^(?P<registry>[^/]+)/(?P<repository>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


@dataclass(frozen=True)
class ImageReference:
    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def selector(self) -> str:
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        suffix = f"@{self.digest}" if self.digest else f":{self.tag or 'latest'}"
        return f"{self.registry}/{self.repository}{suffix}"


def parse_reference(text: str) -> ImageReference:
    body = text.split("://", 1)[1] if "://" in text else text
    match = _REFERENCE.match(body)
    host = body.split("/", 1)[0]
    if not match or not ("." in host or ":" in host or host == "localhost"):
        raise die(
            f"'{text}' is not a full image reference",
            hint="give registry/repository[:tag], e.g. docker://quay.io/org/granite-7b:1.0",
            exit_code=Exit.USAGE,
        )
    return ImageReference(
        normalize_registry(match["registry"]), match["repository"], match["tag"], match["digest"]
    )


def _session(
    reference: ImageReference, paths: Paths, tls_verify: bool, *, push: bool = False
) -> Session:
    credentials = auth.credentials_for(
        f"{reference.registry}/{reference.repository}", auth.appliance_files(paths)
    )
    return Session(
        reference.registry, reference.repository, credentials, tls_verify=tls_verify, push=push
    )


def _manifest(session: Session, reference: ImageReference) -> tuple[dict[str, Any], str]:
    accept = ", ".join((OCI_MANIFEST, DOCKER_MANIFEST, *INDEXES))
    selector = reference.selector
    for _ in range(2):  # an index first, then the manifest it names
        response = session.open(
            "GET", f"/v2/{reference.repository}/manifests/{selector}", headers={"Accept": accept}
        )
        try:
            raw = response.read(4 << 20)
        finally:
            response.close()
        digest = f"sha256:{hashlib.sha256(raw).hexdigest()}"
        if selector.startswith("sha256:") and digest != selector:
            raise die(
                f"{reference}: the manifest arrived with digest {digest}", exit_code=Exit.CORRUPT
            )
        try:
            document = json.loads(raw)
        except ValueError:
            raise die(f"{reference}: the manifest is not JSON", exit_code=Exit.CORRUPT) from None
        if document.get("mediaType") in INDEXES or "manifests" in document:
            selector = _pick_platform(document, reference)
            continue
        if not isinstance(document.get("layers"), list):
            raise die(f"{reference}: the manifest lists no layers", exit_code=Exit.CORRUPT)
        return document, digest
    raise die(f"{reference}: an index points at another index", exit_code=Exit.CORRUPT)


def _pick_platform(index: dict[str, Any], reference: ImageReference) -> str:
    entries = [entry for entry in index.get("manifests", []) if isinstance(entry, dict)]
    for entry in entries:
        platform = entry.get("platform", {})
        if platform.get("os") == "linux" and platform.get("architecture") == "amd64":
            return check_digest(str(entry["digest"]))
    if not entries:
        raise die(f"{reference}: the image index is empty", exit_code=Exit.CORRUPT)
    return check_digest(str(entries[0]["digest"]))


def _need_space(store: Store, layers: list[dict[str, Any]], reference: ImageReference) -> None:
    """Refuse before the first byte when the disk cannot hold the model."""
    need = 0
    for layer in layers:
        digest, size = str(layer["digest"]), int(layer["size"])
        if _title(layer) and store.has_blob(digest, size):
            continue
        partial = store.partial_path(digest)
        already = partial.stat().st_size if partial.exists() else 0
        # A tar layer is downloaded whole, then unpacked: for a while it is there twice.
        need += (2 * size if not _title(layer) else size) - already
    store.ensure_space(need, str(reference))


def _title(layer: dict[str, Any]) -> str | None:
    annotations = layer.get("annotations") or {}
    title = annotations.get(TITLE)
    return str(title) if title else None


def pull(
    text: str, name: str, store: Store, paths: Paths, *, progress: Progress, tls_verify: bool
) -> ModelRecord:
    reference = parse_reference(text)
    session = _session(reference, paths, tls_verify)
    manifest, manifest_digest = _manifest(session, reference)
    layers: list[dict[str, Any]] = manifest["layers"]
    for layer in layers:
        check_digest(str(layer.get("digest", "")))
        media = str(layer.get("mediaType", ""))
        if not _title(layer) and "zstd" in media:
            raise die(
                f"{reference}: zstd-compressed layers are not supported yet",
                hint="push the model uncompressed or with gzip",
                exit_code=Exit.CORRUPT,
            )
    _need_space(store, layers, reference)
    progress.total = sum(int(layer["size"]) for layer in layers)
    slots = threading.Semaphore(PARALLEL)
    results: list[dict[str, FileEntry]] = [{} for _ in layers]

    def fetch(index: int) -> None:
        layer = layers[index]
        digest, size = str(layer["digest"]), int(layer["size"])
        title = _title(layer)
        if title:
            fetch_blob(session, store, digest, size, progress=progress, slots=slots)
            results[index] = {title: FileEntry(digest, size)}
            return
        cached = _layer_files(store, digest)
        if cached is not None:
            progress.add(size, fetched=False)
            results[index] = cached
            return
        where = f"{reference} layer {digest[:19]}"

        def unpack(partial: Path) -> None:
            unpack_layer(partial, store, results[index], where=where)
            _remember_layer(store, digest, results[index])

        fetch_blob(session, store, digest, size, progress=progress, slots=slots, keep=unpack)

    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        for future in [pool.submit(fetch, index) for index in range(len(layers))]:
            future.result()
    merged: dict[str, FileEntry] = {}
    for layer_files in results:  # later layers win, as in an image
        merged.update(layer_files)
    with store.locked(name):
        return store.publish(
            name,
            _strip_models_dir(merged),
            source=f"docker://{reference}",
            manifest=manifest_digest,
        )


def _strip_models_dir(entries: dict[str, FileEntry]) -> dict[str, FileEntry]:
    """RHEL AI's model images keep the files under /models/: the model is what is inside."""
    if entries and all(path.startswith("models/") for path in entries):
        return {path.removeprefix("models/"): entry for path, entry in entries.items()}
    return entries


def _layer_files(store: Store, digest: str) -> dict[str, FileEntry] | None:
    """An unpacked layer whose files are all still in the store need not come again."""
    record = store.root / "layers" / digest.removeprefix("sha256:")
    try:
        document = json.loads(record.read_text())
        found = {p: FileEntry(e["digest"], int(e["size"])) for p, e in document.items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if all(store.has_blob(entry.digest, entry.size) for entry in found.values()):
        return found
    return None


def _remember_layer(store: Store, digest: str, entries: dict[str, FileEntry]) -> None:
    document = {p: {"digest": e.digest, "size": e.size} for p, e in entries.items()}
    files.write_atomic(
        store.root / "layers" / digest.removeprefix("sha256:"), json.dumps(document).encode(), 0o644
    )


# Push ----------------------------------------------------------------------------------------


def push(
    name: str, text: str, store: Store, paths: Paths, *, tls_verify: bool, progress: Progress
) -> str:
    """The model as an OCI artifact: one layer per file (title annotation), so a pull needs
    no unpacking and every file stays one blob. Returns the manifest digest."""
    record = store.record(name)
    reference = parse_reference(text)
    if reference.digest:
        raise die("push to a tag, not a digest", exit_code=Exit.USAGE)
    session = _session(reference, paths, tls_verify, push=True)
    config = json.dumps(
        {"name": record.name, "source": record.source, "files": len(record.files)}, sort_keys=True
    ).encode()
    config_digest = f"sha256:{hashlib.sha256(config).hexdigest()}"
    progress.total = record.size
    layers = []
    for path, entry in record.files.items():
        _upload(session, entry.digest, entry.size, store.blob_path(entry.digest))
        progress.add(entry.size, fetched=True)
        layers.append(
            {
                "mediaType": MODEL_FILE,
                "digest": entry.digest,
                "size": entry.size,
                "annotations": {TITLE: path},
            }
        )
    _upload_bytes(session, config_digest, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.bootlab.model.v1",
            "config": {"mediaType": MODEL_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": layers,
            "annotations": {"org.opencontainers.image.title": record.name},
        },
        sort_keys=True,
    ).encode()
    response = session.open(
        "PUT",
        f"/v2/{reference.repository}/manifests/{reference.selector}",
        headers={"Content-Type": OCI_MANIFEST},
        body=manifest,
        expect=(201, 200),
    )
    response.close()
    return f"sha256:{hashlib.sha256(manifest).hexdigest()}"


def _exists(session: Session, digest: str) -> bool:
    response = session.open("HEAD", f"/v2/{session.repository}/blobs/{digest}", expect=(200, 404))
    response.close()
    return response.status == 200


def _upload(session: Session, digest: str, size: int, path: Path) -> None:
    if _exists(session, digest):
        return
    location = _start_upload(session)
    with path.open("rb") as handle:
        _finish_upload(session, location, digest, size, handle)


def _upload_bytes(session: Session, digest: str, data: bytes) -> None:
    if not _exists(session, digest):
        _finish_upload(session, _start_upload(session), digest, len(data), data)


def _start_upload(session: Session) -> str:
    response = session.open(
        "POST",
        f"/v2/{session.repository}/blobs/uploads/",
        headers={"Content-Length": "0"},
        body=b"",
        expect=(202,),
    )
    response.close()
    location = response.headers.get("location", "")
    if not location:
        raise die(
            f"{session.registry} started an upload without a location", exit_code=Exit.UNREACHABLE
        )
    return location


def _finish_upload(session: Session, location: str, digest: str, size: int, body: Any) -> None:
    separator = "&" if "?" in location else "?"
    target = location.split("://", 1)[-1]
    target = target[target.index("/") :] if "://" in location else location
    response = session.open(
        "PUT",
        f"{target}{separator}digest={digest}",
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        body=body,
        expect=(201, 204),
    )
    response.close()
