"""Writing files and directories so that a crash or a full disk never leaves half of one
behind: `write_atomic` for a file's bytes, `cache_entry` for anything a tool or a function
fills (a cache entry, a checkout, a checkpoint)."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` in one step: written beside it, synced, then renamed over.
    The mode is set before any byte is written, so a secret is never readable by others."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700 if mode & 0o077 == 0 else 0o755)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(descriptor, mode)  # the umask may have narrowed it; a stale file widened it
        with os.fdopen(descriptor, "wb", closefd=False) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    finally:
        os.close(descriptor)
    os.replace(partial, path)
    _fsync_dir(path.parent)


@contextlib.contextmanager
def cache_entry(path: Path, *, marker: str | None = None, sync: bool = False) -> Iterator[Path]:
    """Make `path`, a file or a directory, whole or not at all. The block creates the path
    it is given (`.NAME.partial` beside `path`; a stale one is removed first). When the block
    ends well, a directory gets the empty file `marker` (for readers that look for it), and
    the partial takes `path`'s place (an old entry is moved aside, then removed); when it
    fails, the partial is removed. `sync` makes the entry survive a power cut (checkpoints)."""
    partial = path.with_name(f".{path.name}.partial")
    _remove(partial)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield partial
        if marker is not None and partial.is_dir():
            (partial / marker).touch()
        if sync:
            _fsync_tree(partial)
    except BaseException:
        _remove(partial)
        raise
    if path.is_dir() and not path.is_symlink():
        aside = path.with_name(f".{path.name}.old.partial")
        _remove(aside)
        path.rename(aside)
        partial.rename(path)
        _remove(aside)
    else:
        os.replace(partial, path)
    if sync:
        _fsync_dir(path.parent)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _fsync_tree(root: Path) -> None:
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            if path.is_file():
                with path.open("rb") as handle:
                    os.fsync(handle.fileno())
    else:
        with root.open("rb") as handle:
            os.fsync(handle.fileno())
    _fsync_dir(root if root.is_dir() else root.parent)


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def keep_aside(path: Path, reason: str) -> Path:
    """Copy `path` (mode included) beside itself before it is replaced; returns the copy."""
    backup = path.with_name(f"{path.name}.{reason}-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.copy2(path, backup)
    return backup
