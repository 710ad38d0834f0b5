"""What `bootlab-train.service` runs: preflight (config, model present, backend installed),
then the GPU lock, then the workload (serving's entrypoint is `bootlab.serve`).

A refusal is written to /run/bootlab/<workload>.failure.json as well as the journal, so the
`bootlab ... start` that asked for it shows the same message instead of "unit failed"."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from bootlab import gpu_lock
from bootlab.config import Config
from bootlab.errors import die
from bootlab.paths import Paths
from bootlab.services import Workload
from bootlab.store.layout import model_store

# Exit code for "not configured": the units list it in RestartPreventExitStatus=, so systemd
# does not restart a service that cannot work until the admin acts (sysexits EX_CONFIG).
EX_CONFIG = 78


@dataclass(frozen=True)
class Plan:
    """What preflight found: the command to run, holding the GPU lock."""

    workload: Workload
    argv: tuple[str, ...]


def _in_store(config: Config, paths: Paths, kind: str, name: str | None, setting: str) -> Path:
    if name is None:
        raise die(
            f"nothing to {kind}: {setting} is not set in {paths.config_file}",
            hint=f"pull a model with `bootlab model pull`, then set {setting} "
            "(`bootlab config init` writes a starting file)",
            exit_code=EX_CONFIG,
        )
    location = model_store(paths, config.models.directory).models / name
    if not location.exists():
        raise die(
            f"{setting} names '{name}', which is not in the model store ({location})",
            hint=f"pull it (`bootlab model pull ...`) or fix {setting} in {paths.config_file}",
            exit_code=EX_CONFIG,
        )
    return location


def ml_python(paths: Paths, module: str, backend: str) -> str:
    """The ML venv's Python, when `module` is installed in it."""
    python = paths.ml_venv / "bin" / "python"
    packages = list((paths.ml_venv / "lib").glob(f"python3*/site-packages/{module}/__init__.py"))
    if not python.exists() or not packages:
        raise die(
            f"backend {backend} is not installed in this image ({paths.ml_venv})",
            hint="choose another backend in serve.backend, or use an image profile that ships it",
            exit_code=EX_CONFIG,
        )
    return str(python)


def preflight(workload: Workload, config: Config, paths: Paths) -> Plan:
    """Training's preflight; serving's lives in bootlab.serve.preflight."""
    assert workload == "train"
    return _train_plan(config, paths)


def _train_plan(config: Config, paths: Paths) -> Plan:
    train = config.train
    _in_store(config, paths, "train", train.model, "train.model")
    if train.data is None:
        raise die(
            f"no training data: train.data is not set in {paths.config_file}",
            hint="generate data (`bootlab data generate`) and set train.data",
            exit_code=EX_CONFIG,
        )
    ml_python(paths, "torch", "training")
    raise die(
        "this image has no training backend yet",
        hint="use an image built with the training stack",
        exit_code=EX_CONFIG,
    )


def acquire_gpus(plan: Plan, paths: Paths) -> int:
    """The GPU lock for the workload; refuses, naming the holder, when it is taken."""
    return gpu_lock.acquire(paths.gpu_lock, plan.workload)


def become(plan: Plan, lock: int) -> None:
    """Become the workload: the lock's descriptor survives the exec, so the backend holds it
    until it exits, and systemd's MainPID is the backend itself."""
    os.set_inheritable(lock, True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(plan.argv[0], list(plan.argv))  # noqa: S606 - argv from preflight, no shell
