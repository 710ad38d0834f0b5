"""The serve unit's main process: it starts the backend, tells systemd READY only once
`/v1/models` lists the model, keeps the watchdog fed while the backend keeps answering, and
stops it gracefully. Clients talk to the backend directly: nothing here is in the data path."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

from bootlab import journal
from bootlab.errors import Exit, die
from bootlab.paths import Paths
from bootlab.run import spawn
from bootlab.serve.backends import Backend, Target
from bootlab.workload import state

log = logging.getLogger("bootlab.serve")
PROBE_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 60.0
STATUS_EVERY_S = 5.0  # how often a load in progress says how long it has taken


def endpoint(target: Target) -> str:
    host = target.serve.host
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{target.serve.port}/v1"


def answers(target: Target) -> bool:
    """True when the backend lists the model on /v1/models."""
    request = urllib.request.Request(endpoint(target) + "/models")  # noqa: S310 - http, ours
    if target.api_key:
        request.add_header("Authorization", f"Bearer {target.api_key}")
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:  # noqa: S310 - http to our own backend
            models = json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return False
    return any(entry.get("id") == target.name for entry in models.get("data", []))


def supervise(backend: Backend, target: Target, paths: Paths, lock: int) -> int:
    launch = backend.launch(target)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    log.info("starting %s for %s: %s", backend.name, target.name, " ".join(launch.argv))
    try:
        # The backend inherits the GPU lock (pass_fds), so the lock is held while it runs,
        # whichever of the two goes first; a stop gives it STOP_TIMEOUT_S to finish requests.
        with spawn(
            launch.argv,
            env={**os.environ, **launch.env},
            pass_fds=(lock,),
            stop_timeout=STOP_TIMEOUT_S,
            what=backend.name,
        ) as child:
            try:
                return _serve(child, backend, target, paths, stopping)
            finally:
                # spawn() gives the backend STOP_TIMEOUT_S to finish its requests, within
                # the unit's TimeoutStopSec=.
                journal.notify(
                    f"STOPPING=1\nSTATUS=stopping: {backend.name} finishes its requests "
                    f"(up to {STOP_TIMEOUT_S:.0f} s)"
                )
    finally:
        state.serve_file(paths).unlink(missing_ok=True)


def _serve(
    child: subprocess.Popen[bytes],
    backend: Backend,
    target: Target,
    paths: Paths,
    stopping: threading.Event,
) -> int:
    started = time.time()
    if not _wait_ready(child, target, stopping, f"loading {target.name} with {backend.name}"):
        return Exit.OK if stopping.is_set() else Exit.ERROR
    serving = state.ServeState(
        model=target.name,
        backend=backend.name,
        endpoint=endpoint(target),
        pid=child.pid,
        started=started,
        ready=time.time(),
    )
    state.write(state.serve_file(paths), serving)
    journal.notify(
        f"READY=1\nSTATUS=serving {target.name} with {backend.name} at {endpoint(target)}"
    )
    log.info("%s answers at %s after %.1fs", target.name, endpoint(target), time.time() - started)
    return _watch(child, target, stopping)


def _wait_ready(
    child: subprocess.Popen[bytes], target: Target, stopping: threading.Event, loading: str
) -> bool:
    """Until the model answers; meanwhile STATUS= says how long the load has taken, which
    `bootlab serve start` and `systemctl status` show (a big model loads for minutes)."""
    journal.notify(f"STATUS={loading}")
    began = time.monotonic()
    deadline = began + target.serve.ready_timeout_s
    said = began
    while not stopping.is_set():
        if child.poll() is not None:
            raise die(
                f"the {target.name} server exited (code {child.returncode}) while loading",
                hint="see why: journalctl -u bootlab-serve -n 100",
                exit_code=Exit.ERROR,
            )
        if answers(target):
            return True
        if time.monotonic() > deadline:
            raise die(
                f"{target.name} did not answer within serve.ready_timeout_s "
                f"({target.serve.ready_timeout_s}s)",
                hint="a large model may need longer: raise serve.ready_timeout_s; see "
                "journalctl -u bootlab-serve",
                exit_code=Exit.ERROR,
            )
        now = time.monotonic()
        if now - said >= STATUS_EVERY_S:
            said = now
            journal.notify(
                f"STATUS={loading}, {now - began:.0f} s (at most {target.serve.ready_timeout_s} s)"
            )
        stopping.wait(0.2)  # polled often: READY should follow the first answer closely
    return False


def _watch(child: subprocess.Popen[bytes], target: Target, stopping: threading.Event) -> int:
    """Feed systemd's watchdog only while the backend answers: a hung server stops the
    pings, and systemd restarts the unit."""
    watchdog_us = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
    interval = watchdog_us / 2e6 if watchdog_us else 15.0
    while not stopping.wait(interval):
        if child.poll() is not None:
            log.error("the %s server exited (code %s)", target.name, child.returncode)
            return child.returncode or Exit.ERROR
        if answers(target):
            journal.notify("WATCHDOG=1")
        else:
            log.warning("%s did not answer the health probe", target.name)
    return Exit.OK
