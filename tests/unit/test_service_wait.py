"""`bootlab serve|train start|stop` wait for their systemd job as systemctl does: the daemon
answers at once with the job, and the CLI polls the unit (here a fake source of states)
until the job ends, showing the unit's STATUS= text; a start that does not reach READY is
the failure file's error, Ctrl-C leaves the job running, --no-wait does not wait at all."""

from __future__ import annotations

import argparse
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bootlab.api import ServiceState
from bootlab.cli import build_parser, services
from bootlab.cli.services import Progress, wait
from bootlab.daemon.routes import _view
from bootlab.errors import BootlabError, Exit
from bootlab.paths import Paths
from bootlab.systemd_bus import UnitState
from bootlab.workload import state, units

pytestmark = pytest.mark.unit

UNIT = "bootlab-serve.service"


def _state(active: str, *, job: int | None = None, **fields: Any) -> ServiceState:
    values: dict[str, Any] = {
        "workload": "serve",
        "unit": UNIT,
        "active": active,
        "sub": {"active": "running", "activating": "start"}.get(active, "dead"),
        "main_pid": 42 if active in ("active", "activating", "deactivating") else 0,
        "result": "success",
        "since": 1_700_000_000.0,
        "job": job,
    }
    return ServiceState(**(values | fields))


class Unit:
    """A fake source of unit states: each read answers the next one (the last one stays)."""

    def __init__(self, *states: ServiceState) -> None:
        self.states = list(states)
        self.reads = 0

    def __call__(self) -> ServiceState:
        self.reads += 1
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _no_sleep(_: float) -> None:
    pass


def test_a_start_waits_for_its_job_and_shows_each_status_once() -> None:
    asked = _state("inactive", job=7)
    unit = Unit(
        _state("activating", job=7, status="loading big with vllm"),
        _state("activating", job=7, status="loading big with vllm"),
        _state("activating", job=7, status="loading big with vllm, 5 s"),
        _state("active", status="serving big", active_enter=1_700_000_100.0),
    )
    shown = io.StringIO()
    ended = wait("start", asked, unit, Progress(shown), _no_sleep)
    assert ended.active == "active"
    assert unit.reads == 4  # until the job was gone, not one read more
    assert shown.getvalue().splitlines() == [
        f"{UNIT}: waiting for its turn",  # queued: not yet activating
        f"{UNIT}: loading big with vllm",  # said once, though read twice
        f"{UNIT}: loading big with vllm, 5 s",
    ]


def test_on_a_terminal_the_progress_is_one_live_line() -> None:
    unit = Unit(
        _state("activating", job=7, status="loading big with vllm"),
        _state("active", active_enter=2.0),
    )
    shown = Terminal()
    wait("start", _state("activating", job=7, status="checking"), unit, Progress(shown), _no_sleep)
    text = shown.getvalue()
    assert text.startswith(f"\r{UNIT}: checking [0s]\x1b[K")
    assert f"\r{UNIT}: loading big with vllm [" in text
    assert text.endswith("\n") and text.count("\n") == 1  # the line is ended once, at the end


def test_a_refused_start_is_the_failure_files_error_with_its_exit_code() -> None:
    refusal = state.Failure(error="model 'x' is damaged", hint="pull it again", code=78)
    unit = Unit(
        _state("activating", job=3, status="checking"),
        _state("failed", result="exit-code", failure=refusal),
    )
    with pytest.raises(BootlabError) as refused:
        wait("start", _state("inactive", job=3), unit, Progress(io.StringIO()), _no_sleep)
    error = refused.value
    assert (error.message, error.hint, error.exit_code) == (
        "model 'x' is damaged",
        "pull it again",
        Exit.NOT_CONFIGURED,
    )


def test_a_failure_that_restarts_the_unit_still_fails_the_start() -> None:
    """Restart=on-failure: the job ends as the unit fails, then it waits to restart."""
    unit = Unit(_state("activating", job=None, sub="auto-restart", result="exit-code"))
    with pytest.raises(BootlabError) as failed:
        wait("start", _state("activating", job=3), unit, Progress(io.StringIO()), _no_sleep)
    assert failed.value.message == f"{UNIT} failed to start (exit-code)"
    assert failed.value.exit_code == Exit.CONFLICT
    assert "journalctl -u bootlab-serve.service" in (failed.value.hint or "")


@pytest.mark.parametrize(
    ("ended", "message"),
    [
        (_state("failed", result="start-limit-hit"), "started too often"),
        (_state("inactive"), "was canceled"),  # a stop replaced the start job
        (_state("failed", result="timeout"), r"failed to start \(timeout\)"),
    ],
)
def test_a_start_that_never_became_active_says_why(ended: ServiceState, message: str) -> None:
    with pytest.raises(BootlabError, match=message) as failed:
        wait("start", _state("inactive", job=5), Unit(ended), Progress(io.StringIO()), _no_sleep)
    assert failed.value.exit_code == Exit.CONFLICT


def test_a_start_that_became_active_succeeds_even_if_it_ended_since() -> None:
    """A training job that had already finished: READY, then done and gone, as systemctl
    start reports it (the unit became active during the job)."""
    asked = _state("inactive", job=9, active_enter=1_000.0)
    done = _state("inactive", active_enter=2_000.0)
    assert wait("start", asked, Unit(done), Progress(io.StringIO()), _no_sleep) is done


def test_a_stop_waits_for_its_job_then_answers_the_state() -> None:
    unit = Unit(
        _state("deactivating", job=11, status="stopping: saving checkpoint at step 40"),
        _state("deactivating", job=11, status="stopping: checkpoint saved at step 40"),
        _state("inactive"),
    )
    shown = io.StringIO()
    asked = _state("deactivating", job=11, status="stopping")
    ended = wait("stop", asked, unit, Progress(shown), _no_sleep)
    assert ended.active == "inactive" and unit.reads == 3
    assert "saving checkpoint at step 40" in shown.getvalue()


def test_a_start_job_that_ended_before_the_answer_is_not_waited_for() -> None:
    """The job a request queued is the one waited for: a later job (an auto-restart, a
    start by hand) is someone else's."""
    unit = Unit(_state("activating", job=99, status="another start"))
    with pytest.raises(BootlabError):
        wait("start", _state("inactive", job=3), unit, Progress(io.StringIO()), _no_sleep)
    assert unit.reads == 1


def test_ctrl_c_stops_waiting_and_leaves_the_job_running() -> None:
    def interrupted(_: float) -> None:
        raise KeyboardInterrupt

    unit = Unit(_state("activating", job=4))
    with pytest.raises(BootlabError) as stopped:
        wait("start", _state("activating", job=4), unit, Progress(io.StringIO()), interrupted)
    error = stopped.value
    assert error.exit_code == Exit.INTERRUPTED
    assert f"{UNIT} is still starting (systemd job 4)" in error.message
    assert "bootlab serve stop` cancels it" in (error.hint or "")
    assert unit.reads == 0


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """bootlabd as the CLI sees it: the start's answer, then the unit on each GET."""
    asked: list[tuple[str, str]] = []
    answers = {
        "POST": [_state("inactive", job=21)],
        "GET": [_state("activating", job=21, status="loading"), _state("active", job=None)],
    }

    def ask(_: Paths, method: str, path: str, body: Any = None) -> ServiceState:
        asked.append((method, path))
        queue = answers[method]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    monkeypatch.setattr(services, "ask", ask)
    monkeypatch.setattr(services, "POLL_S", 0.0)
    yield asked


def _args(**options: Any) -> argparse.Namespace:
    base = {"workload": "serve", "action": "start", "no_wait": False, "model": None}
    return argparse.Namespace(**(base | options))


def test_the_cli_waits_by_default_and_not_with_no_wait(
    daemon: list[tuple[str, str]], tmp_path: Path
) -> None:
    shown = services.cmd_service(_args(), Paths(tmp_path))
    assert shown.value.active == "active"
    assert daemon == [
        ("POST", "/v1/services/serve/start"),
        ("GET", "/v1/services/serve"),
        ("GET", "/v1/services/serve"),
    ]
    daemon.clear()
    queued = services.cmd_service(_args(no_wait=True), Paths(tmp_path))
    assert (queued.value.active, queued.value.job) == ("inactive", 21)
    assert daemon == [("POST", "/v1/services/serve/start")]


def test_the_parser_takes_no_wait_on_start_and_stop_only() -> None:
    parser = build_parser()
    for noun in ("serve", "train"):
        for verb in ("start", "stop"):
            assert parser.parse_args([noun, verb, "--no-wait"]).no_wait is True
            assert parser.parse_args([noun, verb]).no_wait is False
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "status", "--no-wait"])


def test_the_state_shows_the_job_the_status_text_and_the_last_failure(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    unit = UnitState(UNIT, "activating", "start", 42, "success", 1, 0, "loading tiny", 17)
    view = _view(units.describe("serve", paths, unit))
    assert (view.job, view.status, view.failure, view.active_enter) == (
        17,
        "loading tiny",
        None,
        None,
    )
    state.failure_file(paths, "serve").parent.mkdir(parents=True, exist_ok=True)
    state.write_failure(paths, "serve", BootlabError("no model", "pull one", Exit.NOT_CONFIGURED))
    idle = UnitState(UNIT, "failed", "failed", 0, "exit-code", 1, 2_000_000, "", 0)
    view = _view(units.describe("serve", paths, idle))
    assert view.job is None and view.active_enter == 2.0
    assert view.failure == state.Failure(error="no model", hint="pull one", code=78)
