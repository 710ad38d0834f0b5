"""Files the CLI streams to bootlabd: a model, a JSONL file or a taxonomy, read by the CLI
as the user who runs it and sent as a tar stream, then unpacked into a root-owned staging
directory (/var/lib/bootlab/uploads/ID) until the request that names it uses it.

Why: bootlabd runs as root without capabilities and with ProtectHome=read-only, so it cannot
enter a 0700 home; and reading a path for a caller would read it with root's rights. The
user's own rights decide what is read; the daemon only ever opens its own copy."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bootlab import text
from bootlab.errors import BootlabError, Exit, die
from bootlab.store.unpack import Readable, unpack_tree

Kind = Literal["file", "directory"]
RESERVE = 1 << 30  # an upload never leaves less free space than this for everything else
STALE_S = 3600.0  # unused this long (the CLI names an upload at once): swept


@dataclass
class Staged:
    id: str
    uid: int
    origin: str  # the path as the client named it: for messages and records, never opened
    kind: Kind
    directory: Path  # uploads/ID; the content is under content/
    files: int
    size: int
    created: float
    claimed: bool = False

    @property
    def content(self) -> Path:
        return self.directory / "content"

    @property
    def path(self) -> Path:
        """The uploaded file, or the tree's root."""
        if self.kind == "directory":
            return self.content
        return self.content / os.path.basename(self.origin)

    def inside(self, relative: str) -> Path:
        """A path inside the uploaded tree, refused if it leads out of it."""
        found = Path(os.path.normpath(self.content / relative))
        if not found.resolve().is_relative_to(self.content.resolve()):
            raise die(f"'{relative}' is not inside the upload", exit_code=Exit.USAGE)
        return found

    def named(self, message: str) -> str:
        """A message as the user should read it: their path, not the staging directory."""
        return message.replace(str(self.path), self.origin)

    def shown(self, error: BootlabError) -> BootlabError:
        error.message = self.named(error.message)
        if error.hint:
            error.hint = self.named(error.hint)
        return error


class _Capped:
    """The upload's stream, refused once it is larger than `limit` bytes."""

    def __init__(self, stream: Readable, limit: int, origin: str) -> None:
        self._stream, self._limit, self._origin = stream, limit, origin
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.read_bytes += len(data)
        if self.read_bytes > self._limit:
            raise die(
                f"{self._origin} does not fit: uploads may use {text.size(self._limit)} here",
                hint="free space in /var/lib/bootlab (bootlab model gc), then try again",
                exit_code=Exit.DISK_FULL,
            )
        return data


class Uploads:
    """The uploads of one daemon: staged, claimed by one request, then removed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._staged: dict[str, Staged] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        """At the daemon's start: no request can still name what an earlier daemon staged."""
        shutil.rmtree(self.root, ignore_errors=True)

    def limit(self) -> int:
        """What an upload may take: the free space less a reserve."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        return max(0, shutil.disk_usage(self.root).free - RESERVE)

    def receive(
        self,
        stream: Readable,
        *,
        uid: int,
        origin: str,
        kind: Kind,
        declared: int | None,
        limit: int | None = None,
    ) -> Staged:
        """Unpack the stream (a tar of one file, or of a tree) into a new staging directory;
        removed again if anything fails."""
        self.sweep()
        cap = self.limit() if limit is None else limit
        if declared is not None and declared > cap:
            raise die(
                f"{origin} ({text.size(declared)}) does not fit: uploads may use "
                f"{text.size(cap)} here",
                hint="free space in /var/lib/bootlab (bootlab model gc), then try again",
                exit_code=Exit.DISK_FULL,
            )
        upload_id = uuid.uuid4().hex[:16]
        directory = self.root / upload_id
        directory.mkdir(mode=0o700, parents=True)
        capped = _Capped(stream, cap, origin)
        try:
            content = directory / "content"
            files, size = unpack_tree(capped, content, where=origin, limit=declared)
            while capped.read(1 << 16):  # the tar's end padding, and anything after it
                pass
            staged = Staged(upload_id, uid, origin, kind, directory, files, size, time.time())
            _check_shape(staged)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        with self._lock:
            self._staged[upload_id] = staged
        return staged

    def claim(self, upload_id: str, uid: int, kind: Kind | None = None) -> Staged:
        """The upload, for the one request that uses it (release() it when done). Only its
        uploader may name it."""
        with self._lock:
            staged = self._staged.get(upload_id)
            if staged is None or staged.uid != uid or staged.claimed:
                raise die(
                    f"no upload '{upload_id}'",
                    hint="an upload is used by one request, by its uploader; send it again",
                    exit_code=Exit.NOT_FOUND,
                )
            if kind is not None and staged.kind != kind:
                raise die(f"{staged.origin} is a {staged.kind}, not a {kind}", exit_code=Exit.USAGE)
            staged.claimed = True
            return staged

    def release(self, staged: Staged) -> None:
        with self._lock:
            self._staged.pop(staged.id, None)
        shutil.rmtree(staged.directory, ignore_errors=True)

    @contextlib.contextmanager
    def used(self, staged: Staged, *, keep: bool = False) -> Iterator[Staged]:
        """Use a claimed upload: its errors name the user's path; it is removed after, or
        only on an error with `keep` (a job still to start uses it)."""
        try:
            yield staged
        except BootlabError as error:
            self.release(staged)
            raise staged.shown(error) from None
        except BaseException:
            self.release(staged)
            raise
        if not keep:
            self.release(staged)

    def sweep(self, older_than_s: float = STALE_S) -> tuple[int, int]:
        """Remove uploads no request used in time, and directories no upload owns (a crash's
        leftovers). Returns how many, and the bytes freed."""
        now = time.time()
        with self._lock:
            stale = [
                s for s in self._staged.values() if not s.claimed and now - s.created > older_than_s
            ]
            for staged in stale:
                del self._staged[staged.id]
            known = {s.id for s in self._staged.values()}
        removed = freed = 0
        if not self.root.is_dir():
            return 0, 0
        stale_ids = {staged.id for staged in stale}
        for directory in self.root.iterdir():
            if directory.name in known:
                continue
            try:
                age = now - directory.stat().st_mtime
            except FileNotFoundError:
                continue
            if directory.name not in stale_ids and age < older_than_s:
                continue  # being received right now
            freed += _footprint(directory)
            shutil.rmtree(directory, ignore_errors=True)
            removed += 1
        return removed, freed


def _check_shape(staged: Staged) -> None:
    """A file upload holds exactly that file."""
    if staged.kind == "directory":
        return
    found = list(staged.content.iterdir())
    if len(found) != 1 or found[0] != staged.path or not found[0].is_file():
        raise die(
            f"{staged.origin}: a file upload must hold that one file (named as it is)",
            exit_code=Exit.USAGE,
        )


def _footprint(directory: Path) -> int:
    total = 0
    for path in directory.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
    return total
