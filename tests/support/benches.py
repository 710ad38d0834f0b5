"""Runs a bench as CI does (`python -m bench.NAME`, here in its quick mode) and finds what it
left: a process carrying its mark (BOOTLAB_BENCH_RUN, which everything it starts inherits),
a container or image named for it, anything in the TMPDIR it was given. Optionally sends it
SIGTERM half-way: once a line of its stderr holds a marker, and once it has a child running."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import MARK, QUICK, carriers

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    left: list[str] = field(default_factory=list)  # what survived it

    def result(self) -> dict[str, object]:
        """The bench's JSON line (its last line of stdout)."""
        assert self.returncode == 0, self.stderr[-4000:]
        lines = self.stdout.strip().splitlines()
        assert lines, f"no result on stdout:\n{self.stderr[-4000:]}"
        found: dict[str, object] = json.loads(lines[-1])
        return found


def run_bench(
    argv: list[str],
    *,
    interrupt_at: str | None = None,
    settle_s: float = 30.0,
    timeout_s: float = 900.0,
) -> Outcome:
    """Run `python ARGV` from the repository root with the quick settings and a mark of its
    own. With `interrupt_at`, SIGTERM once a stderr line contains it and a child of the
    bench runs (or `settle_s` passed). Whatever survived is in Outcome.left, then removed."""
    prefix = "t" + secrets.token_hex(4)
    tmp = Path(tempfile.mkdtemp(prefix="blb-", dir="/tmp"))  # short: sockets live under it
    env = {
        **os.environ,
        MARK: prefix,
        QUICK: "1",
        "TMPDIR": str(tmp),
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "appliance"), str(REPO_ROOT)]),
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        [sys.executable, *argv],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    stderr: list[str] = []
    reached = threading.Event()

    def read_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            stderr.append(line)
            if interrupt_at is not None and interrupt_at in line:
                reached.set()

    stdout: list[str] = []
    readers = [
        threading.Thread(target=read_stderr, daemon=True),
        threading.Thread(target=lambda: stdout.extend(process.stdout or ()), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        if interrupt_at is not None:
            interrupt(process, prefix, reached, settle_s, timeout_s)
        process.wait(timeout_s)
        for reader in readers:
            reader.join(10)
        return Outcome(process.returncode, "".join(stdout), "".join(stderr), leftovers(prefix, tmp))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        remove(prefix, tmp)


def interrupt(
    process: subprocess.Popen[str],
    prefix: str,
    reached: threading.Event,
    settle_s: float,
    timeout_s: float,
) -> None:
    """SIGTERM once the marker was seen and a child of the bench runs (or after settle_s)."""
    deadline = time.monotonic() + timeout_s
    while not reached.wait(0.1):
        assert process.poll() is None, "the bench ended before the marker"
        assert time.monotonic() < deadline, "the bench never reached the marker"
    settled = time.monotonic() + settle_s
    while time.monotonic() < settled and not [
        found for found in carriers(prefix, prefix=True) if found.pid != process.pid
    ]:
        time.sleep(0.01)
    assert process.poll() is None, "the bench ended before it could be interrupted"
    process.send_signal(signal.SIGTERM)


def _podman(*argv: str) -> list[str]:
    if shutil.which("podman") is None:
        return []
    done = subprocess.run(["podman", *argv], capture_output=True, text=True, check=False)
    return done.stdout.split()


def leftovers(prefix: str, tmp: Path) -> list[str]:
    left = [f"process {found}" for found in carriers(prefix, prefix=True)]
    names = _podman("ps", "-a", "--format", "{{.Names}}")
    left += [f"container {name}" for name in names if prefix in name]
    images = _podman("images", "--format", "{{.Repository}}:{{.Tag}}")
    left += [f"image {image}" for image in images if prefix in image]
    left += [f"file {path}" for path in tmp.iterdir()]
    return left


def remove(prefix: str, tmp: Path) -> None:
    """What a failed bench left, so that one failure does not slow every later test."""
    for found in carriers(prefix, prefix=True):
        with contextlib.suppress(ProcessLookupError):
            os.kill(found.pid, signal.SIGKILL)
    for name in _podman("ps", "-a", "--format", "{{.Names}}"):
        if prefix in name:
            _podman("rm", "-f", "-t", "0", name)
    for image in _podman("images", "--format", "{{.Repository}}:{{.Tag}}"):
        if prefix in image:
            _podman("rmi", "-f", image)
    shutil.rmtree(tmp, ignore_errors=True)
