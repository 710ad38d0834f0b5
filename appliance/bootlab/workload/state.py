"""The hand-off files of the serve and train units, each a typed model read and written whole:
the settings a start lays over the config (the override), why the entrypoint refused to
start (the failure), and what the running workload says of itself (serve.json, train.json),
which the daemon reads for `bootlab serve|train status`.

Unknown keys are refused: a key one side writes and the other lacks is an error in the
tests, not a status that silently shows nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, RootModel

from bootlab import files
from bootlab.config import Config
from bootlab.errors import BootlabError, Exit, die
from bootlab.paths import Paths

Workload = Literal["serve", "train"]
WORKLOADS: tuple[Workload, ...] = ("serve", "train")
Phase = Literal["starting", "running", "stopped", "done"]


class _File(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServeState(_File):
    """What is being served, once the backend answers (serve.json)."""

    model: str
    backend: str
    endpoint: str = Field(description="The OpenAI API base URL clients use.")
    pid: int = Field(description="The backend's process.")
    started: float
    ready: float = Field(description="When the model first answered.")


class TrainingProgress(_File):
    phase: str
    phase_index: int
    phases: int
    epoch: int
    step: int
    steps: int = Field(description="Steps in this phase.")
    loss: float
    learning_rate: float
    tokens: int
    tokens_per_s: float
    step_s: float
    eta_s: float = Field(description="Seconds left for the whole job, every phase.")


class TrainingState(_File):
    """The training job's progress (train.json)."""

    job: str
    state: Phase
    output: str = Field(description="The model's name in the store once done.")
    phases: list[str]
    device: str | None = Field(
        None, description="Where it runs: '1 x NVIDIA H200, bf16 autocast' or 'CPU (1 process)'."
    )
    started: float
    progress: TrainingProgress | None = None


class Failure(_File):
    """Why the entrypoint refused to start: its preflight error, as the CLI shows it."""

    error: str
    hint: str | None = None
    code: int

    def as_error(self) -> BootlabError:
        return die(self.error, self.hint, self.code)


class Override(RootModel[dict[str, Any]]):
    """Settings given to `bootlab serve|train start`, over the config's section: a plain
    mapping, checked when laid over it (the section's own model knows its keys)."""


_Model = TypeVar("_Model", bound=BaseModel)


def read(path: Path, model: type[_Model]) -> _Model | None:
    """The file as `model`, or None when it is missing or not one (half a job, an older
    version's file): a status then shows nothing rather than failing."""
    try:
        return model.model_validate_json(path.read_bytes())
    except (OSError, ValueError):
        return None


def write(path: Path, document: BaseModel) -> None:
    files.write_atomic(path, document.model_dump_json().encode(), 0o644)


def serve_file(paths: Paths) -> Path:
    """What is being served, for `bootlab serve status` and `bootlab chat`."""
    return paths.runtime / "serve.json"


def train_file(paths: Paths) -> Path:
    """The job's progress, for `bootlab train status`."""
    return paths.runtime / "train.json"


def serving(paths: Paths) -> ServeState | None:
    return read(serve_file(paths), ServeState)


def training(paths: Paths) -> TrainingState | None:
    return read(train_file(paths), TrainingState)


def failure_file(paths: Paths, workload: Workload) -> Path:
    """Where the entrypoint leaves why it refused to start (its preflight error)."""
    return paths.runtime / f"{workload}.failure.json"


def write_failure(paths: Paths, workload: Workload, error: BootlabError) -> None:
    reason = Failure(error=error.message, hint=error.hint, code=error.exit_code)
    write(failure_file(paths, workload), reason)


def failure(paths: Paths, workload: Workload) -> BootlabError | None:
    reason = read(failure_file(paths, workload), Failure)
    return reason.as_error() if reason is not None else None


def override_file(paths: Paths, workload: Workload) -> Path:
    """Settings given to `bootlab serve|train start`, over the config file. Serving's are in
    /run, so a reboot returns to what /etc/bootlab/config.yaml says; a training job's persist
    in /var, so the job resumes after a reboot, until the next `bootlab train start`."""
    if workload == "train":
        return paths.state / "train.override.json"
    return paths.runtime / f"{workload}.override.json"


def set_override(paths: Paths, workload: Workload, changes: dict[str, Any] | None) -> None:
    """The settings of this start, or none (the config alone) when it gives none."""
    if changes:
        write(override_file(paths, workload), Override(changes))
    else:
        override_file(paths, workload).unlink(missing_ok=True)


def with_override(config: Config, paths: Paths, workload: Workload) -> Config:
    changes = read(override_file(paths, workload), Override)
    if changes is None:
        return config
    section = getattr(config, workload)
    try:
        merged = type(section).model_validate({**section.model_dump(), **changes.root})
    except ValueError as error:  # pydantic's ValidationError among them
        raise die(
            f"the settings given to `bootlab {workload} start` no longer apply: {error}",
            hint=f"start it again with new settings, or remove {override_file(paths, workload)}",
            exit_code=Exit.NOT_CONFIGURED,
        ) from None
    return config.model_copy(update={workload: merged})
