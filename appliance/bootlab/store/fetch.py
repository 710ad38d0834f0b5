"""The pull engine: one blob from a registry in parallel HTTP Range chunks, written in place
and hashed in order as it arrives (one pass, one copy), resumable after a crash or kill,
verified before it becomes a blob.

Resume: a sidecar (`<partial>.chunks`: the chunk size, then one byte per chunk) records the
chunks already on disk; a restarted pull fetches only the others and re-reads the done ones
for the hash. The
partial file is flock'ed while written, so a second puller of the same blob waits for the
first and then finds the blob (two pulls share one download), and gc leaves it alone."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bootlab.errors import BootlabError, die
from bootlab.registry import Session
from bootlab.store.layout import Store

log = logging.getLogger("bootlab.pull")

CHUNK = 32 << 20
WINDOW = 4  # chunks in memory ahead of the hash: at most WINDOW * CHUNK per blob
ATTEMPTS = 6
_HEADER = 8  # the sidecar starts with the chunk size, then one mark byte per chunk
BACKOFF_S = 0.5


@dataclass
class Progress:
    """Shared by every blob of one pull: what the CLI bar and the API show."""

    total: int = 0
    done: int = 0
    fetched: int = 0  # bytes that crossed the network in this run (resume skips the rest)
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, count: int, *, fetched: bool) -> None:
        with self._lock:
            self.done += count
            if fetched:
                self.fetched += count

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.fetched / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        rate = self.rate
        return (self.total - self.done) / rate if rate > 0 else None


class _Abort(Exception):
    pass


class _Download:
    """One blob's chunks: workers fetch and write, one thread hashes in order."""

    def __init__(
        self,
        session: Session,
        digest: str,
        size: int,
        partial: Path,
        *,
        progress: Progress,
        slots: threading.Semaphore,
        chunk: int,
    ) -> None:
        self.session = session
        self.chunk = chunk
        self.digest = digest
        self.size = size
        self.partial = partial
        self.progress = progress
        self.slots = slots
        self.count = max(1, -(-size // chunk))
        self.condition = threading.Condition()
        self.ready: dict[int, bytes | memoryview | None] = {}  # None: on disk from before
        self.next_index = 0
        self.hashed = 0  # chunks hashed so far: the frontier
        self.failure: BaseException | None = None
        self.pending: list[int] = []

    def run(self, descriptor: int, state: int) -> str:
        marks = os.pread(state, self.count, _HEADER).ljust(self.count, b"\0")
        pending = [i for i in range(self.count) if marks[i] != 1]
        for index in range(self.count):
            if marks[index] == 1:
                self.ready[index] = None
                self.progress.add(self._length(index), fetched=False)
        if len(pending) < self.count:
            log.info(
                "resuming %s: %d of %d chunks already here",
                self.digest[:19],
                self.count - len(pending),
                self.count,
            )
        self.pending = pending
        hasher = hashlib.sha256()
        workers = [
            threading.Thread(target=self._worker, args=(descriptor, state), daemon=True)
            for _ in range(min(len(pending), 8))
        ]
        for worker in workers:
            worker.start()
        try:
            for index in range(self.count):
                data = self._wait_for(index)
                if data is None:
                    data = os.pread(descriptor, self._length(index), index * self.chunk)
                hasher.update(data)
                with self.condition:
                    self.ready.pop(index, None)
                    self.hashed = index + 1
                    self.condition.notify_all()
        finally:
            with self.condition:
                if self.failure is None and self.hashed < self.count:
                    self.failure = _Abort()
                self.condition.notify_all()
            for worker in workers:
                worker.join()
        if self.failure is not None and not isinstance(self.failure, _Abort):
            raise self.failure
        return f"sha256:{hasher.hexdigest()}"

    def _length(self, index: int) -> int:
        return min(self.chunk, self.size - index * self.chunk)

    def _wait_for(self, index: int) -> bytes | memoryview | None:
        with self.condition:
            while index not in self.ready:
                if self.failure is not None:
                    raise self.failure
                self.condition.wait()
            return self.ready[index]

    def _take(self) -> int | None:
        with self.condition:
            while True:
                if self.failure is not None or not self.pending:
                    return None
                if self.pending[0] < self.hashed + WINDOW:
                    return self.pending.pop(0)
                self.condition.wait()

    def _worker(self, descriptor: int, state: int) -> None:
        while (index := self._take()) is not None:
            try:
                data = self._fetch(index)
                os.pwrite(descriptor, data, index * self.chunk)
                os.pwrite(state, b"\1", _HEADER + index)  # after the data: a mark never lies
            except BaseException as error:
                with self.condition:
                    self.failure = self.failure or _disk_error(error, self.partial)
                    self.condition.notify_all()
                return
            with self.condition:
                self.ready[index] = data
                self.condition.notify_all()

    def _fetch(self, index: int) -> memoryview:
        start = index * self.chunk
        length = self._length(index)
        buffer = bytearray(length)
        view = memoryview(buffer)
        path = f"/v2/{self.session.repository}/blobs/{self.digest}"
        for attempt in range(ATTEMPTS):
            received = 0
            try:
                with self.slots:
                    response = self.session.open(
                        "GET",
                        path,
                        headers={"Range": f"bytes={start}-{start + length - 1}"},
                        expect=(206, 200),
                    )
                    try:
                        if response.status == 200 and (start or length != self.size):
                            raise die(f"{self.session.registry} ignores HTTP Range requests")
                        while received < length:
                            got = response.answer.readinto(view[received:])
                            if not got:
                                raise ConnectionError("the registry closed the connection")
                            received += got
                            self.progress.add(got, fetched=True)
                    finally:
                        response.close()
                return view
            except (BootlabError, OSError, ConnectionError) as error:
                self.progress.add(-received, fetched=True)
                if isinstance(error, BootlabError) and error.exit_code in (4, 6):
                    raise  # refused or gone: retrying cannot help
                if attempt == ATTEMPTS - 1:
                    reason = error.message if isinstance(error, BootlabError) else str(error)
                    raise die(
                        f"{self.session.registry} stopped answering while sending "
                        f"{self.digest[:19]}: {reason}",
                        hint="pull again when it is back: the download resumes from what is "
                        "already here",
                        exit_code=5,
                    ) from None
                delay = BACKOFF_S * 2**attempt
                log.warning(
                    "chunk %d of %s: %s; retrying in %.1fs", index, self.digest[:19], error, delay
                )
                time.sleep(delay)
        raise AssertionError("unreachable")


def _chunk_size(state: int) -> int:
    """The chunk size the marks were written for: a resume keeps it, whatever CHUNK is now."""
    header = os.pread(state, _HEADER, 0)
    if len(header) == _HEADER and int.from_bytes(header, "little") > 0:
        return int.from_bytes(header, "little")
    os.pwrite(state, CHUNK.to_bytes(_HEADER, "little"), 0)
    return CHUNK


def _disk_error(error: BaseException, partial: Path) -> BaseException:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return die(
            f"the disk is full while writing {partial}",
            hint="free space (bootlab model gc), then pull again: it resumes",
            exit_code=8,
        )
    return error


_inflight: dict[str, threading.Lock] = {}
_inflight_lock = threading.Lock()


def fetch_blob(
    session: Session,
    store: Store,
    digest: str,
    size: int,
    *,
    progress: Progress,
    slots: threading.Semaphore,
    keep: Callable[[Path], None] | None = None,
) -> Path:
    """The blob, downloaded unless present. `keep`, when given, consumes the verified
    partial file itself (tar layers are unpacked, not kept) instead of committing it."""
    with _inflight_lock:
        gate = _inflight.setdefault(digest, threading.Lock())
    with gate:  # two pulls of the same blob in this daemon: the second waits, then finds it
        if keep is None and store.has_blob(digest, size):
            progress.add(size, fetched=False)
            return store.blob_path(digest)
        store.ensure()
        partial = store.partial_path(digest)
        descriptor = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        state = os.open(
            partial.with_suffix(".chunks"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)  # another process pulling it: wait
            if keep is None and store.has_blob(digest, size):
                progress.add(size, fetched=False)
                return store.blob_path(digest)
            if os.fstat(descriptor).st_size != size:
                os.ftruncate(descriptor, 0)
                os.ftruncate(state, 0)
                try:
                    os.posix_fallocate(descriptor, 0, size)  # ENOSPC now, not at 90 %
                except OSError as error:
                    raise _disk_error(error, partial) from None
            if size == 0:
                found = f"sha256:{hashlib.sha256(b'').hexdigest()}"
            else:
                download = _Download(
                    session,
                    digest,
                    size,
                    partial,
                    progress=progress,
                    slots=slots,
                    chunk=_chunk_size(state),
                )
                found = download.run(descriptor, state)
            if found != digest:
                os.ftruncate(descriptor, 0)
                os.ftruncate(state, 0)
                raise die(
                    f"{session.registry}/{session.repository}: blob {digest} arrived with "
                    f"content {found}",
                    hint="the registry holds a corrupt blob; nothing was kept",
                    exit_code=7,
                )
            if keep is not None:
                keep(partial)
                partial.unlink(missing_ok=True)
                return partial
            return store.commit(partial, digest)
        finally:
            os.close(descriptor)
            os.close(state)
            with contextlib.suppress(FileNotFoundError):
                if not partial.exists():
                    partial.with_suffix(".chunks").unlink()
