"""The store on disk: blobs, snapshots, refs and names, and the operations that keep them
consistent (publish, remove, gc, verify)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from bootlab import files, text
from bootlab.errors import Exit, die
from bootlab.paths import Paths

MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_NAME = re.compile(MODEL_NAME)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
HASH_BLOCK = 4 << 20


def check_name(name: str) -> str:
    if not _NAME.match(name) or name in (".", ".."):
        raise die(
            f"'{name}' is not a model name",
            hint="use letters, digits, '.', '_' and '-' (no '/'), e.g. granite-7b",
            exit_code=Exit.USAGE,
        )
    return name


def check_digest(digest: str) -> str:
    if not _DIGEST.match(digest):
        raise die(f"'{digest}' is not a sha256 digest", exit_code=Exit.USAGE)
    return digest


def safe_relative(name: str, *, where: str, within: str = "the model directory") -> PurePosixPath:
    """A path inside a model directory (or `within` another): relative, without '..', not
    empty."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or "\0" in name or name.startswith("/") or ".." in parts:
        raise die(
            f"{where}: refusing the path '{name}': it would land outside {within}",
            hint="the archive is malformed or malicious; do not use it",
            exit_code=Exit.CORRUPT,
        )
    return PurePosixPath(*parts)


@dataclass(frozen=True)
class FileEntry:
    """One file of a model: the blob it is (by digest) and its size."""

    digest: str
    size: int


def hash_file(path: Path) -> FileEntry:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
            size += len(block)
    return FileEntry(f"sha256:{digest.hexdigest()}", size)


@dataclass(frozen=True)
class ModelRecord:
    name: str
    snapshot: str
    source: str
    manifest: str | None
    pulled_at: float
    files: dict[str, FileEntry]

    @property
    def size(self) -> int:
        return sum(entry.size for entry in self.files.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "snapshot": self.snapshot,
            "source": self.source,
            "manifest": self.manifest,
            "pulled_at": self.pulled_at,
            "files": {p: {"digest": f.digest, "size": f.size} for p, f in self.files.items()},
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> ModelRecord:
        return cls(
            name=str(document["name"]),
            snapshot=str(document["snapshot"]),
            source=str(document["source"]),
            manifest=document.get("manifest"),
            pulled_at=float(document["pulled_at"]),
            files={
                str(path): FileEntry(str(entry["digest"]), int(entry["size"]))
                for path, entry in document["files"].items()
            },
        )


@dataclass(frozen=True)
class GcReport:
    blobs: int
    snapshots: int
    partials: int
    bytes_freed: int


class Store:
    def __init__(self, root: Path, models: Path) -> None:
        self.root = root
        self.models = models
        self.blobs = root / "blobs" / "sha256"
        self.partial = root / "partial"
        self.snapshots = root / "snapshots"
        self.refs = root / "refs"
        self.staging = root / "staging"

    def ensure(self) -> None:
        for directory in (
            self.blobs,
            self.partial,
            self.snapshots,
            self.refs,
            self.staging,
            self.models,
        ):
            directory.mkdir(parents=True, exist_ok=True)

    # Blobs ------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self.blobs / check_digest(digest).removeprefix("sha256:")

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        try:
            found = self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            return False
        return size is None or found == size

    def partial_path(self, digest: str) -> Path:
        return self.partial / check_digest(digest).removeprefix("sha256:")

    def commit(self, partial: Path, digest: str) -> Path:
        """A verified partial file becomes the blob (read-only: snapshots hard-link it)."""
        os.chmod(partial, 0o444)
        target = self.blob_path(digest)
        os.replace(partial, target)
        return target

    def ingest(self, source: Path, *, move: bool) -> FileEntry:
        """A file into the blobs: moved when it is ours (staging), else cloned (reflink) or
        copied, never hard-linked: a later edit of the original would change the blob."""
        self.ensure()
        if move:
            return self._keep(source)
        scratch = self.partial / f"ingest-{os.getpid()}-{time.monotonic_ns()}"
        try:
            _clone_or_copy(source, scratch)
            return self._keep(scratch)
        finally:
            scratch.unlink(missing_ok=True)

    def _keep(self, path: Path) -> FileEntry:
        """A file of ours as a blob: committed, or dropped when that blob is already there."""
        entry = hash_file(path)
        if self.has_blob(entry.digest, entry.size):
            path.unlink()
        else:
            self.commit(path, entry.digest)
        return entry

    @contextlib.contextmanager
    def locked(self, name: str) -> Iterator[None]:
        """One writer per name (and one for gc): pulls of other models run side by side."""
        self.ensure()
        with (self.root / f".lock-{name}").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    # Snapshots and names ----------------------------------------------------------------

    def publish(
        self, name: str, entries: Mapping[str, FileEntry], *, source: str, manifest: str | None
    ) -> ModelRecord:
        """Make `name` point at a directory of exactly these files, atomically."""
        check_name(name)
        if not entries:
            raise die(f"{source} has no files to make model '{name}' from", exit_code=Exit.CORRUPT)
        layout = {str(safe_relative(path, where=source)): entry for path, entry in entries.items()}
        canonical = json.dumps({p: e.digest for p, e in sorted(layout.items())}).encode()
        snapshot = hashlib.sha256(canonical).hexdigest()[:32]
        target = self.snapshots / snapshot
        if not target.is_dir():
            # Per thread too: two pulls in one daemon may build the same snapshot at once.
            builder = f"{os.getpid()}-{threading.get_ident()}"
            building = self.snapshots / f".building-{snapshot}-{builder}"
            shutil.rmtree(building, ignore_errors=True)
            for path, entry in layout.items():
                destination = building / path
                destination.parent.mkdir(parents=True, exist_ok=True)
                os.link(self.blob_path(entry.digest), destination)
            try:
                os.rename(building, target)
            except OSError as error:
                if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                shutil.rmtree(building)  # another pull built the same snapshot first
        ordered = dict(sorted(layout.items()))
        record = ModelRecord(name, snapshot, source, manifest, time.time(), ordered)
        files.write_atomic(
            self.refs / f"{name}.json",
            (json.dumps(record.to_json(), indent=1) + "\n").encode(),
            0o644,
        )
        link = self.models / name
        temporary = self.models / f".{name}.{os.getpid()}.link"
        temporary.unlink(missing_ok=True)
        os.symlink(os.path.relpath(target, self.models), temporary)
        os.replace(temporary, link)
        return record

    def records(self) -> list[ModelRecord]:
        found = []
        for path in sorted(self.refs.glob("*.json")):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                found.append(ModelRecord.from_json(json.loads(path.read_text())))
        return found

    def record(self, name: str) -> ModelRecord:
        check_name(name)
        try:
            return ModelRecord.from_json(json.loads((self.refs / f"{name}.json").read_text()))
        except FileNotFoundError:
            raise die(
                f"no model named '{name}' in the store",
                hint="`bootlab model list` shows what is there",
                exit_code=Exit.NOT_FOUND,
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise die(
                f"the store's record of '{name}' is damaged ({error.__class__.__name__})",
                hint=f"remove it (bootlab model remove {name}) and pull it again",
            ) from None

    def remove(self, name: str) -> ModelRecord:
        record = self.record(name)
        (self.models / name).unlink(missing_ok=True)
        (self.refs / f"{name}.json").unlink()
        return record

    def gc(self) -> GcReport:
        """Drop snapshots no name uses, blobs no snapshot links (a blob's link count says
        so), and partial downloads nobody is writing."""
        with self.locked("gc"):
            used = {record.snapshot for record in self.records()}
            snapshots = 0
            for snapshot in self.snapshots.iterdir():
                if snapshot.name not in used and not snapshot.name.startswith(".building-"):
                    shutil.rmtree(snapshot)
                    snapshots += 1
            blobs = freed = 0
            for blob in self.blobs.iterdir():
                stat = blob.stat()
                if stat.st_nlink == 1:
                    blob.unlink()
                    blobs += 1
                    freed += stat.st_size
            partials = 0
            for partial in self.partial.iterdir():
                if _unused(partial):
                    freed += partial.stat().st_size
                    partial.unlink(missing_ok=True)
                    partials += 1
        return GcReport(blobs, snapshots, partials, freed)

    def check(self, name: str) -> list[str]:
        """A quick look, fit for every start: each file is there, linked, and of its size
        (`verify` re-hashes; this does not)."""
        record = self.record(name)
        directory = self.snapshots / record.snapshot
        problems = []
        for path, entry in record.files.items():
            try:
                stat = (directory / path).stat()
            except FileNotFoundError:
                problems.append(f"{path} is missing")
                continue
            if stat.st_size != entry.size:
                problems.append(f"{path} has {stat.st_size} bytes, not {entry.size}")
        return problems

    def verify(self, name: str) -> list[str]:
        """Re-hash every file of the model; the problems, none when it is intact."""
        record = self.record(name)
        directory = self.snapshots / record.snapshot
        problems = []
        for path, entry in record.files.items():
            blob = self.blob_path(entry.digest)
            linked = directory / path
            if not blob.exists():
                problems.append(f"{path}: blob {entry.digest} is missing")
                continue
            found = hash_file(blob)
            if found != entry:
                problems.append(f"{path}: content changed (now {found.digest}, {found.size} bytes)")
            if not linked.exists() or not os.path.samefile(blob, linked):
                problems.append(f"{path}: the model directory no longer links the blob")
        if os.readlink(self.models / name) != os.path.relpath(directory, self.models):
            problems.append(f"{self.models / name} does not point at snapshot {record.snapshot}")
        return problems

    def ensure_space(self, need: int, what: str) -> None:
        """Refuse before the first byte when the disk cannot hold what is coming."""
        self.ensure()
        stat = os.statvfs(self.root)
        free = stat.f_bavail * stat.f_frsize
        if need > free:
            raise die(
                f"not enough space for {what}: the pull needs {text.size(need)} in "
                f"{self.root}, {text.size(free)} are free",
                hint="remove models you no longer need and run `bootlab model gc`, or grow "
                "/var/lib/bootlab",
                exit_code=Exit.DISK_FULL,
            )

    def footprint(self) -> int:
        """Bytes the store really holds on disk for blobs (each inode once)."""
        return sum(blob.stat().st_blocks * 512 for blob in self.blobs.iterdir())


def _unused(partial: Path) -> bool:
    try:
        with partial.open("rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
    except BlockingIOError:
        return False
    except FileNotFoundError:
        return False


def _clone_or_copy(source: Path, target: Path) -> None:
    """A reflink where the filesystem can (no data copied), a plain copy elsewhere."""
    with source.open("rb") as reader, target.open("wb") as writer:
        try:
            fcntl.ioctl(writer.fileno(), 0x40049409, reader.fileno())  # FICLONE
            return
        except OSError:
            pass
        shutil.copyfileobj(reader, writer, HASH_BLOCK)


def model_store(paths: Paths, directory: str | None = None) -> Store:
    """The store and the model directories under one persistent directory: the config's
    `models.directory`, else /var/lib/bootlab (both below the appliance's root)."""
    base = paths.root / directory.lstrip("/") if directory else paths.state
    return Store(base / "store", base / "models")
