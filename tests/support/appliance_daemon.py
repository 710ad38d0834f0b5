"""A real bootlabd on a Unix socket in a temporary root, for the unit tier and benchmarks."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Daemon:
    root: Path
    socket: Path
    process: subprocess.Popen[bytes]

    def env(self) -> dict[str, str]:
        return {**os.environ, "BOOTLAB_ROOT": str(self.root), "BOOTLAB_SOCKET": str(self.socket)}


@contextmanager
def running_daemon(
    extra_args: tuple[str, ...] = (), root: Path | None = None, wrapper: tuple[str, ...] = ()
) -> Iterator[Daemon]:
    """A daemon in a new temporary root, or in `root` (a restart keeps its state); started
    through `wrapper` if given (e.g. setpriv, to drop capabilities as the unit does)."""
    # Unix socket paths are limited to 108 bytes: keep the root short.
    with contextlib.ExitStack() as stack:
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bl-", dir="/tmp")))
        socket_path = root / "api.sock"
        socket_path.unlink(missing_ok=True)  # a killed daemon's: not an answer yet
        env = {**os.environ, "BOOTLAB_ROOT": str(root), "PYTHONPATH": str(REPO_ROOT / "appliance")}
        log = (root / "daemon.log").open("ab")
        process = subprocess.Popen(
            [
                *wrapper,
                sys.executable,
                "-m",
                "bootlab.daemon.server",
                "--socket",
                str(socket_path),
                *extra_args,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not socket_path.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError((root / "daemon.log").read_text())
            time.sleep(0.01)
        try:
            yield Daemon(root, socket_path, process)
        finally:
            process.terminate()
            process.wait(timeout=10)
            log.close()
