"""Runs a bench as CI does (`python -m bench.NAME`, here in its quick mode) and finds what it
left: a process carrying its mark (BOOTLAB_BENCH_RUN, which everything it starts inherits)
or running in a session one of those ran in (a renamed process's environment no longer
shows the mark), a container or image named for it, anything in the TMPDIR it was given.
Optionally sends it SIGTERM half-way: once a line of its stderr holds a marker, and once it
has a child running."""

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

from bootlab.errors import Exit

from bench.harness import MARK, QUICK, Process, carriers

REPO_ROOT = Path(__file__).resolve().parents[2]
RATIO_KEYS = ("ratio", "spread", "control")  # what every ratio bench reports


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


@dataclass
class Watch:
    """What a running bench is: its mark's prefix, and the sessions its processes ran in."""

    prefix: str
    process: subprocess.Popen[str]
    sessions: set[int] = field(default_factory=set)
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    marker: str | None = None
    reached: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)

    def read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)
            if self.marker is not None and self.marker in line:
                self.reached.set()

    def read_stdout(self) -> None:
        assert self.process.stdout is not None
        self.stdout.extend(self.process.stdout)

    def watch_sessions(self) -> None:
        while not self.finished.wait(0.5):
            self.sessions.update(found.sid for found in carriers(self.prefix, prefix=True))

    def children(self) -> list[Process]:
        found = carriers(self.prefix, prefix=True, sessions=self.sessions)
        return [process for process in found if process.pid != self.process.pid]


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
        start_new_session=True,  # its session is the bench's alone
    )
    watch = Watch(prefix, process, {process.pid}, marker=interrupt_at)
    threads = [
        threading.Thread(target=target, daemon=True)
        for target in (watch.read_stderr, watch.read_stdout, watch.watch_sessions)
    ]
    for thread in threads:
        thread.start()
    try:
        if interrupt_at is not None:
            interrupt(watch, settle_s, timeout_s)
        process.wait(timeout_s)
        watch.finished.set()
        for thread in threads:
            thread.join(10)
        left = leftovers(watch, tmp)
        return Outcome(process.returncode, "".join(watch.stdout), "".join(watch.stderr), left)
    finally:
        watch.finished.set()
        if process.poll() is None:
            process.kill()
            process.wait()
        remove(watch, tmp)


def interrupt(watch: Watch, settle_s: float, timeout_s: float) -> None:
    """SIGTERM once the marker was seen and a child of the bench runs (or after settle_s)."""
    deadline = time.monotonic() + timeout_s
    while not watch.reached.wait(0.1):
        assert watch.process.poll() is None, "the bench ended before the marker"
        assert time.monotonic() < deadline, "the bench never reached the marker"
    settled = time.monotonic() + settle_s
    while time.monotonic() < settled and not watch.children():
        time.sleep(0.01)
    assert watch.process.poll() is None, "the bench ended before it could be interrupted"
    watch.process.send_signal(signal.SIGTERM)


def _podman(*argv: str) -> list[str]:
    if shutil.which("podman") is None:
        return []
    done = subprocess.run(["podman", *argv], capture_output=True, text=True, check=False)
    return done.stdout.split()


def leftovers(watch: Watch, tmp: Path) -> list[str]:
    prefix = watch.prefix
    left = [f"process {found}" for found in watch.children()]
    names = _podman("ps", "-a", "--format", "{{.Names}}")
    left += [f"container {name}" for name in names if prefix in name]
    images = _podman("images", "--format", "{{.Repository}}:{{.Tag}}")
    left += [f"image {image}" for image in images if prefix in image]
    left += [f"file {path}" for path in tmp.iterdir()]
    return left


def remove(watch: Watch, tmp: Path) -> None:
    """What a failed bench left, so that one failure does not slow every later test."""
    prefix = watch.prefix
    for found in watch.children():
        with contextlib.suppress(ProcessLookupError):
            os.kill(found.pid, signal.SIGKILL)
    for name in _podman("ps", "-a", "--format", "{{.Names}}"):
        if prefix in name:
            _podman("rm", "-f", "-t", "0", name)
    for image in _podman("images", "--format", "{{.Repository}}:{{.Tag}}"):
        if prefix in image:
            _podman("rmi", "-f", image)
    shutil.rmtree(tmp, ignore_errors=True)


def leaves_nothing(
    argv: list[str], *, interrupt_at: str | None = None, ratio: bool = True, settle_s: float = 30
) -> dict[str, object] | None:
    """Run a bench in its quick mode, to its end or SIGTERMed once `interrupt_at` shows, and
    hold it to the harness's promises: nothing survives it; interrupted, it exits with
    Exit.INTERRUPTED; finished, its result (returned) has a ratio with its spread and
    control when it is a ratio bench."""
    outcome = run_bench(argv, interrupt_at=interrupt_at, settle_s=settle_s)
    assert outcome.left == [], (outcome.left, outcome.stderr[-4000:])
    if interrupt_at is not None:
        assert outcome.returncode == Exit.INTERRUPTED, outcome.stderr[-4000:]
        return None
    result = outcome.result()
    if ratio:
        missing = [key for key in RATIO_KEYS if result.get(key) is None]
        assert not missing, (missing, result)
        spread, ratio_ = result["spread"], result["ratio"]
        assert isinstance(spread, list) and isinstance(ratio_, float | int), result
        assert spread[0] <= ratio_ <= spread[1], result
    return result
