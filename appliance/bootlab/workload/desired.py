"""What the appliance should be doing — idle, serving, or training its job — kept in /var so
that a reboot returns to it: the serve/train entrypoints record it once they hold the GPUs,
a stop by the admin (not a shutdown) sets it back to idle, and `bootlab boot restore`
(bootlab-restore.service) starts it again at boot.

systemd's own `enable` cannot say this: serving and training conflict, the choice changes
with every start, and /etc is the admin's (merged across upgrades), not the daemon's."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from bootlab import files
from bootlab.errors import Exit
from bootlab.paths import Paths
from bootlab.run import run
from bootlab.workload import state
from bootlab.workload.state import Workload

Wanted = Literal["idle", "serve", "train"]


class Desired(BaseModel):
    """desired.json: the last state an admin asked for (or a workload reached)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workload: Wanted
    since: float


def desired_file(paths: Paths) -> Path:
    return paths.state / "desired.json"


def wanted(paths: Paths) -> Desired:
    """What should run; idle when nothing was ever asked (a fresh appliance)."""
    return state.read(desired_file(paths), Desired) or Desired(workload="idle", since=0.0)


def want(paths: Paths, workload: Wanted) -> None:
    if wanted(paths).workload != workload:
        document = Desired(workload=workload, since=time.time()).model_dump_json()
        files.write_atomic(desired_file(paths), document.encode(), 0o644)


def shutting_down() -> bool:
    """Whether the machine is going down (a reboot or power-off): systemd is then in its
    'stopping' state, with shutdown.target queued, when it stops our units."""
    if shutil.which("systemctl") is None:
        return False
    # Not 0 unless "running": the answer is in the text, whatever the exit code.
    said = run(["systemctl", "is-system-running"], capture=True, check=False)
    return said.stdout.decode().strip() == "stopping"


def settle(paths: Paths, workload: Workload, code: int) -> None:
    """After a workload's supervisor returned `code`: a finished job, or a stop that is not a
    shutdown, means the admin wants the appliance idle; a shutdown keeps the wish (the boot
    restores it); a crash keeps it too (systemd's Restart= acts on it)."""
    if code != Exit.OK:
        return
    if workload == "train":
        job = state.training(paths)
        if job is not None and job.state == "done":
            want(paths, "idle")
            return
    if not shutting_down():
        want(paths, "idle")


def restore(paths: Paths) -> str:
    """At boot: start what should run, without waiting (its unit says READY in its own
    time). Returns what was done, for the journal."""
    desired = wanted(paths)
    if desired.workload == "idle":
        return "the appliance was idle: nothing to start"
    unit = f"bootlab-{desired.workload}.service"
    run(["systemctl", "start", "--no-block", unit], capture=True, what=f"starting {unit}")
    return f"started {unit}: it was running before the reboot"
