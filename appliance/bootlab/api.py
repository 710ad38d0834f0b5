"""The API's schema: request and response bodies shared by the daemon and the CLI.

Requests reject unknown fields, so a typo in a client is an error, not a silent default. The
workloads' own state files (TrainingState among them) are bootlab.workload.state's models,
answered as they are."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from bootlab.config import Config
from bootlab.sysinfo import SystemInfo
from bootlab.workload.state import Failure, TrainingState, Workload

API_VERSION = "v1"


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ErrorBody(_Body):
    error: str
    hint: str | None = None
    code: int = Field(1, description="The exit code the CLI returns for this error.")


class ServiceState(_Body):
    workload: Workload
    unit: str
    active: str = Field(description="systemd ActiveState: active, inactive, failed, ...")
    sub: str
    main_pid: int
    result: str
    since: float | None = Field(description="Seconds since the epoch of the last change.")
    active_enter: float | None = Field(
        None, description="When the unit last became active (for these units: READY)."
    )
    status: str = Field(
        "", description="What the service says of itself (systemd's StatusText): loading, step."
    )
    job: int | None = Field(
        None,
        description="The systemd job queued or running for the unit (a start or a stop); "
        "a start or stop answers at once, and its job ends when the unit is ready or stopped.",
    )
    failure: Failure | None = Field(
        None, description="Why the last start was refused or failed, until the next start."
    )
    model: str | None = Field(None, description="What is served (serve, once it answers).")
    backend: str | None = None
    endpoint: str | None = Field(None, description="The OpenAI API base URL clients use.")
    ready_at: float | None = None
    training: TrainingState | None = Field(
        None, description="The training job's progress (train, since the unit last started)."
    )


class UpgradeStatus(_Body):
    checked_at: float
    available: bool | None = Field(description="None when the check itself failed.")
    message: str


class Status(_Body):
    version: str
    hostname: str
    profile: str
    services: list[ServiceState]
    gpu_holder: str | None = Field(description="Who holds the GPU lock, e.g. 'serve (pid 42)'.")
    registries: list[str]
    upgrade: UpgradeStatus | None
    config_error: str | None
    warnings: list[str] = []


class LoginRequest(_Body):
    registry: str = Field(min_length=1, max_length=255)
    username: str = Field(min_length=1, max_length=255)
    password: SecretStr = Field(min_length=1, max_length=8192)
    tls_verify: bool = True


class LoginResponse(_Body):
    registry: str
    anonymous: bool = Field(description="The registry needs no login: nothing was checked.")
    files: list[str]
    warnings: list[str] = []


class LogoutRequest(_Body):
    registry: str = Field(min_length=1, max_length=255)


class LogoutResponse(_Body):
    registry: str
    removed_from: list[str]


class AuthEntry(_Body):
    registry: str
    username: str
    podman: bool = Field(description="podman and skopeo can use it.")
    bootc: bool = Field(description="`bootc upgrade` can use it (/etc/ostree/auth.json).")


class AuthStatus(_Body):
    registries: list[AuthEntry]
    warnings: list[str] = []


class ConfigView(_Body):
    config: Config
    files: list[str] = Field(description="The files read, lowest priority first.")


class ConfigInitRequest(_Body):
    force: bool = False


class ConfigInitResponse(_Body):
    path: str
    backup: str | None
    profile: str


class ModelFile(_Body):
    path: str
    digest: str
    size: int


class Model(_Body):
    name: str
    path: str = Field(description="The directory serve and train open.")
    source: str
    snapshot: str
    manifest: str | None
    size: int
    pulled_at: float
    files: list[ModelFile]


class ModelList(_Body):
    models: list[Model]
    store_bytes: int = Field(description="Bytes on disk for all blobs, each stored once.")


UPLOAD_ID = r"^[0-9a-f]{16}$"
UPLOADED = "An upload's id (POST /v1/uploads): used by this request, then removed."


class UploadRequest(_Body):
    """The query of POST /v1/uploads; the body is an uncompressed tar stream (chunked)."""

    origin: str = Field(
        pattern=r"^/",
        max_length=4096,
        description="The uploaded path on the client's machine: named in messages and records.",
    )
    kind: Literal["file", "directory"] = Field(
        description="file: the tar holds that one file; directory: a tree."
    )
    size: int | None = Field(None, ge=0, description="The files' bytes, if known: checked first.")


class Upload(_Body):
    id: str
    origin: str
    kind: Literal["file", "directory"]
    files: int
    size: int


class PullRequest(_Body):
    """A model from a registry or Hugging Face, or one the client uploaded (its files read
    by the client, with the caller's rights: bootlabd opens no path a request names)."""

    reference: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="docker://, oci:// or hf://ORG/REPO[@REV].",
    )
    upload: str | None = Field(None, pattern=UPLOAD_ID, description=UPLOADED)
    name: str | None = Field(None, max_length=128, description="Default: from the reference.")
    tls_verify: bool = True

    @model_validator(mode="after")
    def _one_source(self) -> PullRequest:
        if (self.reference is None) == (self.upload is None):
            raise ValueError("give either reference or upload")
        return self


class PushRequest(_Body):
    name: str = Field(min_length=1, max_length=128)
    reference: str = Field(min_length=1, max_length=4096)
    tls_verify: bool = True


class Job(_Body):
    id: str
    kind: Literal["pull", "push", "generate"]
    target: str
    state: Literal["running", "succeeded", "failed"]
    unit: Literal["bytes", "requests"] = Field(
        "bytes", description="What total/done/fetched count: bytes, or teacher requests."
    )
    total: int
    done: int
    fetched: int = Field(description="Done by this job (a resume skips what was done before).")
    rate_bytes_s: float = Field(description="fetched a second (bytes or requests).")
    eta_s: float | None
    started: float
    finished: float | None
    error: ErrorBody | None = None
    model: Model | None = None
    datasets: list[DatasetView] | None = Field(None, description="What a generation made.")


class VerifyResult(_Body):
    name: str
    ok: bool
    problems: list[str]


class GcResult(_Body):
    blobs: int
    snapshots: int
    partials: int = Field(description="Partial downloads, and uploads no request used.")
    bytes_freed: int


class DatasetView(_Body):
    name: str
    source: str
    sha256: str
    samples: int
    messages: int
    longest_tokens: int = Field(description="Roughly (characters / 4), the longest sample.")
    imported_at: float


class DatasetList(_Body):
    datasets: list[DatasetView]


class DatasetImportRequest(_Body):
    upload: str = Field(pattern=UPLOAD_ID, description=UPLOADED + " A JSONL file.")
    name: str | None = Field(None, max_length=128)
    context: int | None = Field(None, ge=16, description="Refuse samples longer than this.")


class GenerateRequest(_Body):
    """Synthetic data from a taxonomy, through a teacher (default: what bootlab-serve
    serves)."""

    upload: str = Field(pattern=UPLOAD_ID, description=UPLOADED + " The taxonomy's tree.")
    taxonomy: str = Field(
        ".", min_length=1, max_length=4096, description="The taxonomy's path in the upload."
    )
    name: str = Field(max_length=100, description="Datasets NAME-knowledge and NAME-skills.")
    ref: str | None = Field(None, max_length=256, description="Leaves changed against it.")
    all: bool = Field(False, description="Every leaf, not only the changed ones.")
    endpoint: str | None = Field(
        None, pattern=r"^https?://", max_length=2048, description="An OpenAI API base URL."
    )
    model: str | None = Field(None, max_length=256, description="The teacher's model name.")
    api_key: SecretStr | None = Field(
        None, max_length=4096, description="The endpoint's API key (read by the client)."
    )
    concurrency: int = Field(8, ge=1, le=256)
    rounds: int = Field(2, ge=1, le=1000, description="Requests per skill or document chunk.")
    judge: bool = Field(False, description="Drop pairs the teacher itself scores below 4.")


class StartRequest(_Body):
    """Settings for this start only (kept in /run until the next start); the config file
    stays as it is."""

    model: str | None = Field(None, max_length=128, description="A model from the store.")
    port: int | None = Field(None, ge=1, le=65535, description="serve only")
    backend: Literal["auto", "vllm", "llama-cpp"] | None = Field(None, description="serve only")
    max_model_len: int | None = Field(None, ge=16, description="serve only")
    job_yaml: str | None = Field(
        None, max_length=1 << 20, description="train only: a job file's text (train settings)"
    )
    job_source: str | None = Field(
        None, max_length=4096, description="train only: the job file's name, for messages"
    )


class ServiceAction(_Body):
    action: Literal["start", "stop"]


__all__ = [
    "API_VERSION",
    "AuthEntry",
    "AuthStatus",
    "ConfigInitRequest",
    "ConfigInitResponse",
    "ConfigView",
    "DatasetImportRequest",
    "DatasetList",
    "DatasetView",
    "ErrorBody",
    "GcResult",
    "Job",
    "LoginRequest",
    "LoginResponse",
    "LogoutRequest",
    "LogoutResponse",
    "Model",
    "ModelFile",
    "ModelList",
    "PullRequest",
    "PushRequest",
    "ServiceAction",
    "ServiceState",
    "StartRequest",
    "Status",
    "SystemInfo",
    "UpgradeStatus",
    "Upload",
    "UploadRequest",
    "VerifyResult",
]
