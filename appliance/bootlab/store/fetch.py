"""The pull engine: one blob from a registry in parallel HTTP Range chunks, written in place
and hashed in order as it arrives (one pass), resumable after a crash or kill, verified and
flushed to disk before it becomes a blob.

One copy per byte: the socket is read straight into page-aligned block buffers, and whole
blocks go to disk from them with O_DIRECT, so the CPU never copies them into the page cache
(that copy, the page-cache bookkeeping and the writeback after it were about half of the
pull's CPU time on a 2-core machine, more than the hash). Where the filesystem refuses
O_DIRECT, for the unaligned last block and for tar layers (read back at once to unpack),
blocks are written through the page cache.

Resume: a sidecar (`<partial>.chunks`: the block size, then one byte per block) records the
blocks already on disk; a restarted pull fetches only the others and re-reads the done ones
for the hash. The
partial file is flock'ed while written, so a second puller of the same blob waits for the
first and then finds the blob (two pulls share one download), and gc leaves it alone."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import mmap
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bootlab.errors import BootlabError, Exit, die
from bootlab.registry import Session
from bootlab.store.layout import Store

log = logging.getLogger("bootlab.pull")

BLOCK = 4 << 20  # what is written, marked and hashed as one: a kill loses at most this
CHUNK = 32 << 20  # what one Range request asks for (at most)
PARALLEL = 6  # requests in flight per blob
WINDOW_BYTES = 128 << 20  # fetched ahead of the hash, held in memory, per blob
ATTEMPTS = 6
_HEADER = 8  # the sidecar starts with the chunk size, then one mark byte per chunk
_ALIGN = 4096  # O_DIRECT: offsets and lengths in whole pages (any disk's logical block)
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


class _Buffers:
    """Block buffers shared by every pull of the process and reused: allocating (and
    zeroing) a fresh one per block cost a tenth of the throughput, and more when memory is
    short. At most KEEP are kept idle. Anonymous maps, so page-aligned as O_DIRECT needs."""

    KEEP = 48  # 192 MiB of 4 MiB blocks

    def __init__(self) -> None:
        self._idle: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def take(self, size: int) -> mmap.mmap:
        with self._lock:
            for index, buffer in enumerate(self._idle):
                if len(buffer) == size:
                    return self._idle.pop(index)
        return mmap.mmap(-1, size)

    def give(self, buffer: mmap.mmap) -> None:
        with self._lock:
            if len(self._idle) < self.KEEP:
                self._idle.append(buffer)


_buffers = _Buffers()


class _Download:
    """One blob: workers fetch runs of blocks (one Range request each) and write every block
    as soon as it is whole; one thread hashes the blocks in order."""

    def __init__(
        self,
        session: Session,
        digest: str,
        size: int,
        partial: Path,
        *,
        progress: Progress,
        slots: threading.Semaphore,
        block: int,
    ) -> None:
        self.session = session
        self.block = block
        self.digest = digest
        self.size = size
        self.partial = partial
        self.progress = progress
        self.slots = slots
        self.count = max(1, -(-size // block))
        self.run_blocks = max(1, CHUNK // block)
        self.window = max(self.run_blocks, WINDOW_BYTES // block)
        self.condition = threading.Condition()
        self.ready: dict[int, memoryview | None] = {}  # None: on disk from an earlier run
        self.hashed = 0  # blocks hashed so far: the frontier
        self.failure: BaseException | None = None
        self.pending: list[int] = []
        self.direct = -1  # the partial opened with O_DIRECT, or -1: through the page cache

    def _buffer(self, length: int) -> memoryview:
        return memoryview(_buffers.take(self.block))[:length]

    def run(self, descriptor: int, state: int) -> str:
        marks = os.pread(state, self.count, _HEADER).ljust(self.count, b"\0")
        self.pending = [i for i in range(self.count) if marks[i] != 1]
        for index in range(self.count):
            if marks[index] == 1:
                self.ready[index] = None
                self.progress.add(self._length(index), fetched=False)
        if len(self.pending) < self.count:
            log.info(
                "resuming %s: %d of %d blocks already here",
                self.digest[:19],
                self.count - len(self.pending),
                self.count,
            )
        hasher = hashlib.sha256()
        workers = [
            threading.Thread(target=self._worker, args=(descriptor, state), daemon=True)
            for _ in range(min(-(-len(self.pending) // self.run_blocks), PARALLEL))
        ]
        for worker in workers:
            worker.start()
        try:
            for index in range(self.count):
                data = self._wait_for(index)
                hasher.update(
                    data
                    if data is not None
                    else os.pread(descriptor, self._length(index), index * self.block)
                )
                with self.condition:
                    done = self.ready.pop(index, None)
                    if done is not None:
                        _buffers.give(done.obj)  # type: ignore[arg-type]
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

    def _write(self, descriptor: int, data: memoryview, offset: int) -> None:
        """A whole block with O_DIRECT where it can; the unaligned last one, and every block
        once the filesystem has refused O_DIRECT (EINVAL), through the page cache."""
        direct = self.direct
        if direct >= 0 and len(data) % _ALIGN == 0 and offset % _ALIGN == 0:
            try:
                _write_all(direct, data, offset)
                return
            except OSError as error:
                if error.errno != errno.EINVAL:
                    raise
                log.info("%s: O_DIRECT refused here, writing through the page cache", self.partial)
                self.direct = -1
                # A short direct write leaves an unaligned rest: the page cache takes it all.
        _write_all(descriptor, data, offset)

    def _length(self, index: int) -> int:
        return min(self.block, self.size - index * self.block)

    def _wait_for(self, index: int) -> memoryview | None:
        with self.condition:
            while index not in self.ready:
                if self.failure is not None:
                    raise self.failure
                self.condition.wait()
            return self.ready[index]

    def _take(self) -> list[int] | None:
        """The next run of consecutive missing blocks, once the hash is near enough that
        holding them in memory stays within the window."""
        with self.condition:
            while True:
                if self.failure is not None or not self.pending:
                    return None
                if self.pending[0] < self.hashed + self.window:
                    run = [self.pending.pop(0)]
                    while (
                        self.pending
                        and self.pending[0] == run[-1] + 1
                        and len(run) < self.run_blocks
                    ):
                        run.append(self.pending.pop(0))
                    return run
                self.condition.wait()

    def _worker(self, descriptor: int, state: int) -> None:
        while (run := self._take()) is not None:
            try:
                self._fetch(run, descriptor, state)
            except BaseException as error:
                with self.condition:
                    self.failure = self.failure or _disk_error(error, self.partial)
                    self.condition.notify_all()
                return

    def _fetch(self, run: list[int], descriptor: int, state: int) -> None:
        """Fetch the run; each block is written and marked the moment it is whole, so a
        crash loses at most the block in flight; a failure retries from that block."""
        path = f"/v2/{self.session.repository}/blobs/{self.digest}"
        position = 0  # blocks of the run already done
        for attempt in range(ATTEMPTS):
            start = run[position] * self.block
            end = run[-1] * self.block + self._length(run[-1])
            received = 0
            try:
                with self.slots:
                    response = self.session.open(
                        "GET",
                        path,
                        headers={"Range": f"bytes={start}-{end - 1}"},
                        expect=(206, 200),
                    )
                    try:
                        if response.status == 200 and (start or end != self.size):
                            raise die(f"{self.session.registry} ignores HTTP Range requests")
                        while position < len(run):
                            index = run[position]
                            buffer = self._buffer(self._length(index))
                            received = 0
                            while received < len(buffer):
                                got = response.answer.readinto(buffer[received:])
                                if not got:
                                    raise ConnectionError("the registry closed the connection")
                                received += got
                                self.progress.add(got, fetched=True)
                            self._write(descriptor, buffer, index * self.block)
                            _write_all(state, memoryview(b"\1"), _HEADER + index)  # after it
                            received = 0
                            position += 1
                            with self.condition:
                                self.ready[index] = buffer
                                self.condition.notify_all()
                    finally:
                        response.close()
                return
            except (BootlabError, OSError, ConnectionError) as error:
                self.progress.add(-received, fetched=True)
                if isinstance(error, BootlabError) and error.exit_code in (
                    Exit.CREDENTIALS,
                    Exit.NOT_FOUND,
                ):
                    raise  # refused or gone: retrying cannot help
                if isinstance(error, OSError) and error.errno == errno.ENOSPC:
                    raise
                if attempt == ATTEMPTS - 1:
                    reason = error.message if isinstance(error, BootlabError) else str(error)
                    raise die(
                        f"{self.session.registry} stopped answering while sending "
                        f"{self.digest[:19]}: {reason}",
                        hint="pull again when it is back: the download resumes from what is "
                        "already here",
                        exit_code=Exit.UNREACHABLE,
                    ) from None
                delay = BACKOFF_S * 2**attempt
                log.warning(
                    "%s at byte %d: %s; retrying in %.1fs",
                    self.digest[:19],
                    run[position] * self.block,
                    error,
                    delay,
                )
                time.sleep(delay)


def _block_size(state: int) -> int:
    """The block size the marks were written for: a resume keeps it, whatever BLOCK is now."""
    header = os.pread(state, _HEADER, 0)
    if len(header) == _HEADER and int.from_bytes(header, "little") > 0:
        return int.from_bytes(header, "little")
    os.pwrite(state, BLOCK.to_bytes(_HEADER, "little"), 0)
    return BLOCK


def _open_direct(partial: Path, block: int) -> int:
    """The partial file again, for O_DIRECT writes; -1 where blocks cannot be aligned or the
    filesystem has no O_DIRECT."""
    if block % _ALIGN:
        return -1
    try:
        return os.open(partial, os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
    except OSError:
        return -1


def _write_all(descriptor: int, data: memoryview, offset: int) -> None:
    """pwrite until all is written: a nearly full disk takes part of a block and says so
    only in the count; the next call then raises ENOSPC."""
    while data:
        written = os.pwrite(descriptor, data, offset)
        data = data[written:]
        offset += written


def _disk_error(error: BaseException, partial: Path) -> BaseException:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return die(
            f"the disk is full while writing {partial}",
            hint="free space (bootlab model gc), then pull again: it resumes",
            exit_code=Exit.DISK_FULL,
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
                # Sparse, not fallocate'd: preallocation cost a quarter of the throughput
                # here; the space was checked before the pull, and ENOSPC is still caught.
                os.ftruncate(state, 0)
                os.ftruncate(descriptor, 0)
                os.ftruncate(descriptor, size)
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
                    block=_block_size(state),
                )
                # A tar layer is read back at once to unpack: that one stays in the cache.
                direct = _open_direct(partial, download.block) if keep is None else -1
                download.direct = direct
                try:
                    found = download.run(descriptor, state)
                finally:
                    if direct >= 0:
                        os.close(direct)
            if found != digest:
                os.ftruncate(descriptor, 0)
                os.ftruncate(state, 0)
                raise die(
                    f"{session.registry}/{session.repository}: blob {digest} arrived with "
                    f"content {found}",
                    hint="the registry holds a corrupt blob; nothing was kept",
                    exit_code=Exit.CORRUPT,
                )
            if keep is not None:
                keep(partial)
                partial.unlink(missing_ok=True)
                return partial
            # Once, before it becomes a blob (not per block): direct writes are on the
            # device already, so this only flushes its cache, the metadata and the tail.
            os.fdatasync(descriptor)
            return store.commit(partial, digest)
        finally:
            os.close(descriptor)
            os.close(state)
            with contextlib.suppress(FileNotFoundError):
                if not partial.exists():
                    partial.with_suffix(".chunks").unlink()
