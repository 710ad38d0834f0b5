"""One lock for the GPUs: serving and training each take it, so neither can start on top of
the other, even when something is started outside systemd.

The lock is an flock(2) on /run/bootlab/gpu.lock, held by an open file that the workload's
process keeps (across exec), so it is released exactly when that process exits, crash
included. The file's content only says who holds it, for the error message."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from bootlab.errors import Exit, die

_WORKLOADS = {"serve": "serving", "train": "training"}


@dataclass(frozen=True)
class Holder:
    name: str
    pid: int
    since: float


def _open(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)


def acquire(path: Path, name: str) -> int:
    """Take the lock for `name`; returns the descriptor that holds it (inheritable, so an
    exec'd backend keeps holding it). Refuses, naming the holder, when it is taken."""
    descriptor = _open(path)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        current = holder(path)
        if current is not None and current.name in _WORKLOADS:
            activity = _WORKLOADS[current.name]
            raise die(
                f"{activity} is running (pid {current.pid}): stop bootlab-{current.name} first",
                hint=f"systemctl stop bootlab-{current.name}; serve and train never share GPUs",
                exit_code=Exit.GPU_BUSY,
            ) from None
        who = f"{current.name} (pid {current.pid})" if current else "another process"
        raise die(
            f"the GPUs are in use by {who}",
            hint="stop it first; bootlab's services never share GPUs",
            exit_code=Exit.GPU_BUSY,
        ) from None
    record = json.dumps({"name": name, "pid": os.getpid(), "since": time.time()})
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, record.encode(), 0)
    os.set_inheritable(descriptor, True)
    return descriptor


def holder(path: Path) -> Holder | None:
    """Who holds the lock now; None when it is free."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        else:
            return None  # we could take it: nobody holds it (a stale record is ignored)
        with contextlib.suppress(ValueError, KeyError, TypeError):
            record = json.loads(os.pread(descriptor, 4096, 0))
            return Holder(str(record["name"]), int(record["pid"]), float(record["since"]))
        return Holder("unknown", 0, 0.0)
    finally:
        os.close(descriptor)
