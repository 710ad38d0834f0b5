"""The serve and train hand-off files: what the serve supervisor writes is what the API and the
teacher choice read, through the one typed model; a file with a key either side lacks is
refused, not half read; the failure and override files round-trip."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bootlab import journal
from bootlab.config import Config, Serve
from bootlab.daemon.routes import _view
from bootlab.errors import BootlabError, Exit, die
from bootlab.paths import Paths
from bootlab.sdg import job, teacher
from bootlab.serve import supervise
from bootlab.serve.backends import Launch, Target
from bootlab.systemd_bus import UnitState
from bootlab.workload import request, state, units

pytestmark = pytest.mark.unit

# A backend that lists one model on /v1/models, as vLLM and llama-server do once loaded.
FAKE_BACKEND = """
import http.server, json, sys, time
name, port = sys.argv[1], int(sys.argv[2])
time.sleep(float(sys.argv[3]))  # loading
class Models(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"data": [{"id": name}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Models).serve_forever()
"""


def _unit(active: str) -> UnitState:
    return UnitState(
        "bootlab-serve.service", active, "running", 42, "success", 1_700_000_000_000_000
    )


class FakeBackend:
    name = "fake"

    def __init__(self, loading_s: float = 0.0) -> None:
        self.loading_s = loading_s

    def launch(self, target: Target) -> Launch:
        port = str(target.serve.port)
        argv = (sys.executable, "-c", FAKE_BACKEND, target.name, port, str(self.loading_s))
        return Launch(argv, {})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path)


@pytest.fixture
def signals() -> Iterator[None]:
    """The supervisor takes SIGTERM and SIGINT for itself; pytest gets them back after."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_what_the_serve_supervisor_writes_the_api_shows(paths: Paths, signals: None) -> None:
    serve = Serve(port=free_port(), ready_timeout_s=60)
    target = Target(sys.executable, paths.state, "tiny", serve, gpus=0, api_key=None)
    seen: dict[str, Any] = {}

    ended = threading.Event()

    def read_then_stop() -> None:
        """While it serves: the file as the API and `data generate` read it; then a stop."""
        try:
            while not state.serve_file(paths).exists() and not ended.wait(0.05):
                pass
            seen["view"] = _view(units.describe("serve", paths, _unit("active")))
            seen["inactive"] = _view(units.describe("serve", paths, _unit("inactive")))
            seen["teacher"] = job.teacher(paths, None, None, None)
            seen["file"] = json.loads(state.serve_file(paths).read_text())
        finally:
            if not ended.is_set():  # what systemd sends on `bootlab serve stop`
                os.kill(os.getpid(), signal.SIGTERM)

    reader = threading.Thread(target=read_then_stop)
    reader.start()
    try:
        with open(paths.root / "gpu.lock", "w") as lock:
            code = supervise.supervise(FakeBackend(), target, paths, lock.fileno())
    finally:
        ended.set()
        reader.join()
    assert code == Exit.OK
    view = seen["view"]
    endpoint = f"http://127.0.0.1:{serve.port}/v1"
    assert (view.model, view.backend, view.endpoint) == ("tiny", "fake", endpoint)
    assert view.ready_at is not None and view.since == 1_700_000_000
    assert seen["inactive"].endpoint is None  # a stale file: not shown
    assert seen["teacher"] == teacher.Teacher(endpoint, "tiny", None)
    backend_pid = seen["file"]["pid"]
    assert not state.serve_file(paths).exists()  # gone with the backend
    with pytest.raises(ProcessLookupError):
        os.kill(backend_pid, 0)  # stopped and reaped


def test_a_loading_backend_says_how_long_it_has_taken_then_ready(
    paths: Paths, signals: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `bootlab serve start` and `systemctl status` show while a model loads: STATUS=
    with the seconds so far, then READY; a stop says that the backend finishes its work."""
    said: list[str] = []
    monkeypatch.setattr(journal, "notify", said.append)
    monkeypatch.setattr(supervise, "STATUS_EVERY_S", 0.5)
    serve = Serve(port=free_port(), ready_timeout_s=60)
    target = Target(sys.executable, paths.state, "tiny", serve, gpus=0, api_key=None)

    def stop_once_ready() -> None:
        while not any(line.startswith("READY=1") for line in said):
            threading.Event().wait(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    stopper = threading.Thread(target=stop_once_ready, daemon=True)
    stopper.start()
    with open(paths.root / "gpu.lock", "w") as lock:
        assert supervise.supervise(FakeBackend(2.0), target, paths, lock.fileno()) == Exit.OK
    stopper.join()
    ready = next(i for i, line in enumerate(said) if line.startswith("READY=1"))
    loading = said[:ready]
    assert loading[0] == "STATUS=loading tiny with fake"
    timed = [
        re.fullmatch(r"STATUS=loading tiny with fake, (\d+) s \(at most 60 s\)", line)
        for line in loading[1:]
    ]
    seconds = [int(match.group(1)) for match in timed if match]
    assert len(seconds) == len(loading) - 1 >= 2  # every half second here, every 5 s in the unit
    assert seconds == sorted(seconds) and seconds[-1] >= 1
    assert said[ready].endswith(f"serving tiny with fake at http://127.0.0.1:{serve.port}/v1")
    assert said[-1] == "STOPPING=1\nSTATUS=stopping: fake finishes its requests (up to 60 s)"


def test_a_state_file_with_a_key_the_api_lacks_is_refused(paths: Paths) -> None:
    serving = {
        "model": "tiny", "backend": "vllm", "endpoint": "http://127.0.0.1:8000/v1",
        "pid": 42, "started": 1.0, "ready": 2.0,
    }  # fmt: skip
    state.serve_file(paths).parent.mkdir(parents=True)
    state.serve_file(paths).write_text(json.dumps(serving))
    assert state.serving(paths) == state.ServeState(**serving)
    state.serve_file(paths).write_text(json.dumps({**serving, "gpus": 2}))
    with pytest.raises(ValueError, match="gpus"):
        state.ServeState.model_validate_json(state.serve_file(paths).read_bytes())
    assert state.serving(paths) is None
    assert _view(units.describe("serve", paths, _unit("active"))).endpoint is None
    with pytest.raises(BootlabError, match="no teacher: nothing is being served"):
        job.teacher(paths, None, None, None)
    training = {"job": "j", "state": "running", "output": "o", "phases": ["p"], "started": 1.0}
    state.train_file(paths).write_text(json.dumps({**training, "loss": 2.5}))
    assert state.training(paths) is None
    state.train_file(paths).write_text(json.dumps(training))
    assert state.training(paths) == state.TrainingState(**training)


def test_a_refusal_reaches_the_start_that_asked_for_it(paths: Paths) -> None:
    refusal = die("model 'x' is damaged", hint="pull it again", exit_code=Exit.NOT_CONFIGURED)
    assert state.failure(paths, "serve") is None
    state.write_failure(paths, "serve", refusal)
    back = state.failure(paths, "serve")
    assert back is not None
    assert (back.message, back.hint, back.exit_code) == (
        "model 'x' is damaged",
        "pull it again",
        Exit.NOT_CONFIGURED,
    )
    assert state.failure(paths, "train") is None


def test_a_serve_start_lays_its_settings_over_the_config_until_the_next(paths: Paths) -> None:
    state.set_override(paths, "serve", request.changes("serve", {"model": "m", "port": 9000}))
    assert state.override_file(paths, "serve").is_relative_to(paths.runtime)  # not past a boot
    merged = state.with_override(Config(), paths, "serve")
    assert (merged.serve.model, merged.serve.port) == ("m", 9000)
    state.set_override(paths, "serve", {})
    assert not state.override_file(paths, "serve").exists()
    assert state.with_override(Config(), paths, "serve") == Config()
    state.set_override(paths, "serve", {"port": 0})  # valid once, not after an upgrade
    with pytest.raises(BootlabError, match="no longer apply") as raised:
        state.with_override(Config(), paths, "serve")
    assert raised.value.exit_code == Exit.NOT_CONFIGURED


@pytest.mark.parametrize(
    ("workload", "body", "message"),
    [
        ("train", {"model": "m", "port": 1}, "train start takes no port"),
        ("serve", {"job_yaml": "model: m\n"}, "serve start takes no job"),
        ("train", {"model": "../m"}, "'../m'"),
    ],
)
def test_a_start_request_that_cannot_apply_is_a_usage_error(
    workload: state.Workload, body: dict[str, object], message: str
) -> None:
    with pytest.raises(BootlabError, match=message):
        request.changes(workload, body)


def test_a_job_file_goes_with_its_text_and_where_it_came_from(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("model: m\ndata: d\n")
    body = request.body({"model": None, "port": 8001, "follow": True}, str(job))
    assert body == {"port": 8001, "job_yaml": "model: m\ndata: d\n", "job_source": str(job)}
    changes = request.changes("train", request.body({"model": "n"}, str(job)))
    assert (changes["model"], changes["data"]) == ("n", "d")  # the option over the job
    with pytest.raises(BootlabError, match="cannot read") as raised:
        request.body({}, str(tmp_path / "missing.yaml"))
    assert raised.value.exit_code == Exit.USAGE
