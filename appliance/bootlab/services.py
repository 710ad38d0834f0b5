"""The serve and train workloads as systemd services: their state, start and stop.

systemd is the one authority: the units conflict with each other, and the daemon only asks
systemctl, so `systemctl start bootlab-train` by hand and the API behave the same."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Literal

from bootlab import files
from bootlab.config import Config
from bootlab.errors import Exit, die
from bootlab.paths import Paths
from bootlab.run import run
from bootlab.systemd_bus import Systemd, UnitState

__all__ = ["WORKLOADS", "UnitState", "Workload", "failure_file", "start", "state", "stop"]

Workload = Literal["serve", "train"]
WORKLOADS: tuple[Workload, ...] = ("serve", "train")
TIMEOUT_S = 120.0

# Start and stop requests through the API take turns: the last request wins, and systemd's
# Conflicts= guarantees that never both run, whatever the order of concurrent requests.
_serialized = threading.Lock()


def unit_of(workload: Workload) -> str:
    return f"bootlab-{workload}.service"


_systemd = Systemd()


def state(workload: Workload) -> UnitState:
    return _systemd.unit(unit_of(workload))


def failure_file(paths: Paths, workload: Workload) -> Path:
    """Where the entrypoint leaves why it refused to start (its preflight error)."""
    return paths.runtime / f"{workload}.failure.json"


def override_file(paths: Paths, workload: Workload) -> Path:
    """Settings given to `bootlab serve|train start`, over the config file. Serving's are in
    /run, so a reboot returns to what /etc/bootlab/config.yaml says; a training job's persist
    in /var, so the job resumes after a reboot, until the next `bootlab train start`."""
    if workload == "train":
        return paths.state / "train.override.json"
    return paths.runtime / f"{workload}.override.json"


def with_override(config: Config, paths: Paths, workload: Workload) -> Config:
    try:
        changes = json.loads(override_file(paths, workload).read_text())
    except (FileNotFoundError, ValueError):
        return config
    section = getattr(config, workload)
    try:
        merged = type(section).model_validate({**section.model_dump(), **changes})
    except ValueError as error:
        raise die(
            f"the settings given to `bootlab {workload} start` no longer apply: {error}",
            hint=f"start it again with new settings, or remove {override_file(paths, workload)}",
            exit_code=Exit.NOT_CONFIGURED,
        ) from None
    return config.model_copy(update={workload: merged})


def start(workload: Workload, paths: Paths, changes: dict[str, object] | None = None) -> UnitState:
    """Start the workload's unit; systemd stops the other one first (Conflicts=). The unit
    is Type=notify and its entrypoint says READY only after preflight, so a refusal comes
    back here, and its reason with it."""
    unit = unit_of(workload)
    failure = failure_file(paths, workload)
    with _serialized:
        if changes:
            files.write_atomic(override_file(paths, workload), json.dumps(changes).encode(), 0o644)
        else:
            override_file(paths, workload).unlink(missing_ok=True)
        failure.unlink(missing_ok=True)
        result = run(["systemctl", "start", unit], capture=True, check=False, timeout=TIMEOUT_S)
        # Read inside the lock: the answer is the state this request made, not a later one's.
        after = state(workload)
    if result.returncode != 0:
        try:
            reason = json.loads(failure.read_bytes())
            error = die(str(reason["error"]), reason.get("hint"), int(reason["code"]))
        except (OSError, ValueError, KeyError, TypeError):
            error = None
        if error is not None:
            raise error
        if after.result == "start-limit-hit":
            raise die(
                f"{unit} was started too often in a short time; systemd refuses for now",
                hint=f"wait a few seconds, or: systemctl reset-failed {unit}",
                exit_code=Exit.CONFLICT,
            )
        raise die(
            f"{unit} failed to start",
            hint=f"see why: journalctl -u {unit} -n 50 (or bootlab {workload} status)",
            exit_code=Exit.CONFLICT,
        )
    return after


def stop(workload: Workload) -> UnitState:
    unit = unit_of(workload)
    with _serialized:
        run(["systemctl", "stop", unit], capture=True, timeout=TIMEOUT_S, what=f"stopping {unit}")
        return state(workload)
