"""The desired state: recorded when a workload holds the GPUs, cleared by an admin's stop but
not by a shutdown, and started again at boot by `bootlab boot restore`."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from bootlab.errors import Exit
from bootlab.paths import Paths
from bootlab.workload import desired, state
from bootlab.workload.state import TrainingState

pytestmark = pytest.mark.unit


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    (tmp_path / "var/lib/bootlab").mkdir(parents=True)
    (tmp_path / "run/bootlab").mkdir(parents=True)
    return Paths(tmp_path)


@pytest.fixture
def systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A systemctl on PATH that logs its argv and says what `is-system-running` should."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "systemctl.calls"
    script = bin_dir / "systemctl"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        'if [ "$1" = is-system-running ]; then cat "$SYSTEM_STATE_FILE"; fi\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "system-state").write_text("running\n")
    monkeypatch.setenv("SYSTEM_STATE_FILE", str(tmp_path / "system-state"))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_a_fresh_appliance_wants_nothing(paths: Paths) -> None:
    assert desired.wanted(paths).workload == "idle"


def test_an_admins_stop_makes_it_idle(paths: Paths, systemctl: Path) -> None:
    desired.want(paths, "serve")
    desired.settle(paths, "serve", Exit.OK)
    assert desired.wanted(paths).workload == "idle"


def test_a_shutdown_keeps_the_wish_for_the_next_boot(paths: Paths, systemctl: Path) -> None:
    (systemctl.parent / "system-state").write_text("stopping\n")
    desired.want(paths, "train")
    desired.settle(paths, "train", Exit.OK)
    assert desired.wanted(paths).workload == "train"


def test_a_crash_keeps_the_wish_systemd_restarts_it(paths: Paths, systemctl: Path) -> None:
    desired.want(paths, "serve")
    desired.settle(paths, "serve", 137)
    assert desired.wanted(paths).workload == "serve"


def test_a_finished_job_is_not_trained_again_even_at_shutdown(
    paths: Paths, systemctl: Path
) -> None:
    (systemctl.parent / "system-state").write_text("stopping\n")
    desired.want(paths, "train")
    done = TrainingState(job="j", state="done", output="m", phases=["p"], started=1.0)
    state.write(state.train_file(paths), done)
    desired.settle(paths, "train", Exit.OK)
    assert desired.wanted(paths).workload == "idle"


def test_restore_starts_the_wanted_unit_without_waiting(paths: Paths, systemctl: Path) -> None:
    desired.want(paths, "train")
    said = desired.restore(paths)
    assert "bootlab-train.service" in said
    assert systemctl.read_text().splitlines() == ["start --no-block bootlab-train.service"]


def test_restore_of_an_idle_appliance_starts_nothing(paths: Paths, systemctl: Path) -> None:
    assert "nothing" in desired.restore(paths)
    assert not systemctl.exists()


def test_a_damaged_file_reads_as_idle(paths: Paths) -> None:
    desired.desired_file(paths).write_text(json.dumps({"workload": "dance", "since": 0}))
    assert desired.wanted(paths).workload == "idle"
