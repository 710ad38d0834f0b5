"""The serve and train workloads as systemd units: their state, start and stop.

systemd is the one authority: the units conflict with each other, and the daemon only asks
systemctl, so `systemctl start bootlab-train` by hand and the API behave the same."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from bootlab.errors import Exit, die
from bootlab.paths import Paths
from bootlab.run import run
from bootlab.systemd_bus import Systemd, UnitState
from bootlab.workload import desired, state
from bootlab.workload.state import WORKLOADS, ServeState, TrainingState, Workload

__all__ = [
    "WORKLOADS",
    "Service",
    "UnitState",
    "Workload",
    "describe",
    "start",
    "stop",
    "unit_state",
]

TIMEOUT_S = 120.0

# Start and stop requests through the API take turns: the last request wins, and systemd's
# Conflicts= guarantees that never both run, whatever the order of concurrent requests.
_serialized = threading.Lock()


def unit_of(workload: Workload) -> str:
    return f"bootlab-{workload}.service"


_systemd = Systemd()


def unit_state(workload: Workload) -> UnitState:
    return _systemd.unit(unit_of(workload))


@dataclass(frozen=True)
class Service:
    """A unit's state, with what its workload says of itself in its state file."""

    workload: Workload
    unit: UnitState
    serving: ServeState | None = None
    training: TrainingState | None = None


def describe(workload: Workload, paths: Paths, unit: UnitState | None = None) -> Service:
    """The unit (now, or as `unit` found it) and its state file: serve.json only while the
    unit is active (a stale one outlives a crash), train.json always (a job's last word,
    done or stopped, is what `bootlab train status` shows after it)."""
    unit = unit or unit_state(workload)
    if workload == "serve":
        serving = state.serving(paths) if unit.active == "active" else None
        return Service(workload, unit, serving=serving)
    return Service(workload, unit, training=state.training(paths))


def start(workload: Workload, paths: Paths, changes: dict[str, Any] | None = None) -> UnitState:
    """Start the workload's unit; systemd stops the other one first (Conflicts=). The unit
    is Type=notify and its entrypoint says READY only after preflight, so a refusal comes
    back here, and its reason with it."""
    unit = unit_of(workload)
    with _serialized:
        state.set_override(paths, workload, changes)
        state.failure_file(paths, workload).unlink(missing_ok=True)
        result = run(["systemctl", "start", unit], capture=True, check=False, timeout=TIMEOUT_S)
        # Read inside the lock: the answer is the state this request made, not a later one's.
        after = unit_state(workload)
    if result.returncode != 0:
        error = state.failure(paths, workload)
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


def stop(workload: Workload, paths: Paths) -> UnitState:
    """Stop the unit; the admin wants the appliance idle now, even if the unit had already
    failed (its entrypoint could not say so)."""
    unit = unit_of(workload)
    with _serialized:
        desired.want(paths, "idle")
        run(["systemctl", "stop", unit], capture=True, timeout=TIMEOUT_S, what=f"stopping {unit}")
        return unit_state(workload)
