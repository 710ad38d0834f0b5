"""The serve and train workloads as systemd units: their state, start and stop.

systemd is the one authority: the units conflict with each other, and the daemon only queues
systemd jobs, so `systemctl start bootlab-train` by hand and the API behave the same."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any

from bootlab.paths import Paths
from bootlab.systemd_bus import Systemd, UnitState
from bootlab.workload import desired, state
from bootlab.workload.state import WORKLOADS, Failure, ServeState, TrainingState, Workload

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

# Start and stop requests through the API take turns queuing their job: the last request
# wins (systemd's job mode replace), and Conflicts= guarantees that never both run.
_serialized = threading.Lock()


def unit_of(workload: Workload) -> str:
    return f"bootlab-{workload}.service"


_systemd = Systemd()


def unit_state(workload: Workload) -> UnitState:
    return _systemd.unit(unit_of(workload))


@dataclass(frozen=True)
class Service:
    """A unit's state, with what its workload says of itself in its state files."""

    workload: Workload
    unit: UnitState
    serving: ServeState | None = None
    training: TrainingState | None = None
    failure: Failure | None = None


def describe(workload: Workload, paths: Paths, unit: UnitState | None = None) -> Service:
    """The unit (now, or as `unit` found it) and its state files: serve.json only while the
    unit is active (a stale one outlives a crash), train.json always (a job's last word,
    done or stopped, is what `bootlab train status` shows after it), and why the last start
    was refused, until the next start (what a waiting `bootlab ... start` reports)."""
    unit = unit or unit_state(workload)
    failure = state.read(state.failure_file(paths, workload), Failure)
    if workload == "serve":
        serving = state.serving(paths) if unit.active == "active" else None
        return Service(workload, unit, serving=serving, failure=failure)
    return Service(workload, unit, training=state.training(paths), failure=failure)


def start(workload: Workload, paths: Paths, changes: dict[str, Any] | None = None) -> UnitState:
    """Queue the start of the workload's unit and answer at once, with the job in the
    state: systemd stops the other unit first (Conflicts=), and the unit is Type=notify, so
    the job ends when the workload says READY (the model answers, the data is checked) or
    fails, as late as the unit's own timeouts allow. Whoever asked watches the job end (the
    CLI does, `bootlab.cli.services`); a refusal lands in the failure file, cleared here."""
    unit = unit_of(workload)
    with _serialized:
        state.set_override(paths, workload, changes)
        state.failure_file(paths, workload).unlink(missing_ok=True)
        job = _systemd.start(unit)
        # Read inside the lock: the answer is the state this request made, not a later one's.
        return replace(unit_state(workload), job=job)


def stop(workload: Workload, paths: Paths) -> UnitState:
    """Queue the stop and answer at once: a training job saves a checkpoint first, which
    may take minutes (TimeoutStopSec=, extended while the checkpoint is being written). The
    admin wants the appliance idle now, even if the unit had already failed (its entrypoint
    could not say so)."""
    with _serialized:
        desired.want(paths, "idle")
        job = _systemd.stop(unit_of(workload))
        return replace(unit_state(workload), job=job)
