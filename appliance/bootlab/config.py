"""The appliance's settings: the image's defaults (/usr/share/bootlab/config.yaml) under the
admin's file (/etc/bootlab/config.yaml), validated into one frozen `Config`.

Errors name the file, line and key as written, and how to fix them, like the image spec."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from bootlab import files, yamlfile
from bootlab.errors import BootlabError, Exit, die
from bootlab.paths import Paths

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
GpuCount = int | Literal["auto"]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Serve(_Section):
    """What `bootlab-serve.service` runs."""

    backend: Literal["auto", "vllm", "llama-cpp"] = Field(
        "auto",
        description="auto: by the model's files (safetensors/bin → vLLM, GGUF → llama.cpp).",
    )
    model: Name | None = Field(None, description="A model in the store (`bootlab model list`).")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    gpus: GpuCount = Field("auto", description="GPUs to shard across (tensor parallel).")
    max_model_len: int | None = Field(
        None, ge=16, description="Context length; at most the model's max_position_embeddings."
    )
    api_key_file: Annotated[str, StringConstraints(pattern=r"^/")] | None = Field(
        None, description="A file holding the API key clients must send (kept out of argv)."
    )
    vllm_args: tuple[str, ...] = Field((), description="Extra vLLM arguments, as they are.")
    llama_cpp_args: tuple[str, ...] = Field(
        (), description="Extra llama_cpp.server arguments, as they are."
    )
    ready_timeout_s: int = Field(
        900, ge=10, description="How long loading may take before the start counts as failed."
    )


class LoRA(_Section):
    """Low-rank adapters instead of a full fine-tune: a fraction of the memory."""

    rank: int = Field(8, ge=1, le=1024)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: tuple[str, ...] = Field(("q_proj", "k_proj", "v_proj", "o_proj"), min_length=1)


class Phase(_Section):
    """One phase of a multi-phase job (LAB: knowledge, then skills)."""

    name: Name
    data: Name = Field(description="A dataset from `bootlab data list`.")
    epochs: int = Field(1, ge=1, le=1000)
    learning_rate: float = Field(2e-5, gt=0.0, le=1.0)
    effective_batch_size: int = Field(
        32, ge=1, description="Samples per optimizer step, accumulated over micro-batches."
    )
    warmup_steps: int = Field(0, ge=0)


class Train(_Section):
    """What `bootlab-train.service` runs: a job of one or more phases; the best checkpoint of
    a phase (by held-out loss) starts the next one."""

    model: Name | None = Field(None, description="The student model, from the store.")
    data: Name | None = Field(
        None, description="One dataset for a one-phase job (or list `phases` instead)."
    )
    phases: tuple[Phase, ...] = Field((), description="The phases, in order.")
    job: Name | None = Field(
        None, description="Names the checkpoint directory (default: the output's name)."
    )
    output: Name | None = Field(
        None, description="The trained model's name in the store (default: MODEL-tuned)."
    )
    max_seq_len: int = Field(2048, ge=16, description="Longest sample, in tokens.")
    max_batch_len: int = Field(
        8192, ge=16, description="Tokens per micro-batch (samples packed, no padding)."
    )
    lora: LoRA | None = None
    checkpoint_every: int = Field(100, ge=1, description="Optimizer steps between checkpoints.")
    keep_checkpoints: int = Field(2, ge=1, description="Resume checkpoints kept per job.")
    held_out: float = Field(
        0.05, ge=0.0, lt=0.5, description="Fraction of each dataset kept out to pick the best."
    )
    select_with: Annotated[str, StringConstraints(pattern=r"^/")] | None = Field(
        None,
        description="A multiple-choice benchmark (bootlab model evaluate's format): each "
        "phase's best epoch is the one that scores highest on it, not the lowest held-out loss.",
    )
    seed: int = 42
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="auto: bf16 on GPUs that support it, fp32 on CPU."
    )
    gpus: GpuCount = "auto"
    processes: int | Literal["auto"] = Field(
        "auto",
        description="Training processes (torchrun ranks): auto is one a GPU, or one on CPU; "
        "on a CPU-only machine several processes shard the model (FSDP over gloo).",
    )
    zero_stage: Literal["auto", 0, 1, 2, 3] = Field(
        "auto",
        description="How much several processes shard (ZeRO stages, done with torch FSDP): "
        "1-2 optimizer state and gradients, 3 the weights too; auto: from the memory estimate.",
    )
    offload: Literal["auto", "none", "cpu"] = Field(
        "auto", description="Keep the sharded weights and optimizer state in CPU memory."
    )

    @model_validator(mode="after")
    def _one_way_to_name_data(self) -> Train:
        if self.data is not None and self.phases:
            raise ValueError("set either data (one phase) or phases, not both")
        names = [phase.name for phase in self.phases]
        if len(set(names)) != len(names):
            raise ValueError(f"phase names repeat: {', '.join(names)}")
        if self.max_batch_len < self.max_seq_len:
            raise ValueError(
                f"max_batch_len ({self.max_batch_len}) must hold the longest sample "
                f"(max_seq_len {self.max_seq_len})"
            )
        return self

    def resolved_phases(self) -> tuple[Phase, ...]:
        if self.phases:
            return self.phases
        return (Phase(name="train", data=self.data),) if self.data else ()

    def output_name(self) -> str | None:
        return self.output or (f"{self.model}-tuned" if self.model else None)

    def job_name(self) -> str | None:
        return self.job or self.output_name()


class Models(_Section):
    """The model store."""

    directory: Annotated[str, StringConstraints(pattern=r"^/")] | None = Field(
        None,
        description="Where the store and the model directories live (default "
        "/var/lib/bootlab); must persist across upgrades, so somewhere under /var.",
    )
    hf_endpoint: str | None = Field(
        None, description="A Hugging Face mirror, e.g. https://hf-mirror.example.com."
    )


class Config(_Section):
    serve: Serve = Serve()
    train: Train = Train()
    models: Models = Models()


_KNOWN_KEYS = sorted(
    {
        "serve",
        "train",
        "models",
        *Serve.model_fields,
        *Train.model_fields,
        *Phase.model_fields,
        *LoRA.model_fields,
        *Models.model_fields,
    },
)


def load(paths: Paths) -> Config:
    """Defaults from the image, then the admin's file; a missing file is no error."""
    layers = [
        (path, located)
        for path in (paths.defaults_file, paths.config_file)
        if (located := yamlfile.read_yaml(path, hint=f"fix or remove {path}")) is not None
    ]
    merged: dict[str, Any] = {}
    for path, located in layers:
        if not isinstance(located.data, dict):
            raise die(f"{path}:1: the config must be a mapping of settings", hint=_SHOW_HINT)
        merged = yamlfile.deep_merge(merged, located.data)
    try:
        return Config.model_validate(merged)
    except ValidationError as error:
        raise _explain(error, merged, layers) from None


def load_job(text: str, source: str) -> dict[str, Any]:
    """A training job file (`bootlab train start --job FILE`): the `train` section's keys, at
    the top or under `train:`, checked with the file's line numbers. Returns the settings
    it sets, to lay over the config's."""
    located = yamlfile.parse_yaml(text, source)
    data = located.data
    if isinstance(data, dict) and set(data) == {"train"}:
        data = data["train"]
        located = yamlfile.Located(
            data, {key[1:]: line for key, line in located.lines.items() if key[:1] == ("train",)}
        )
    if not isinstance(data, dict):
        raise die(f"{source}:1: a job is a mapping of train settings", hint=_SHOW_HINT)
    try:
        Train.model_validate(data)
    except ValidationError as error:
        explained = _explain(error, data, [(Path(source), located)])
        raise die(
            explained.message, hint=f"fix {source}; {_SHOW_HINT}", exit_code=Exit.USAGE
        ) from None
    if "phases" in data:
        data.setdefault("data", None)  # the job's phases replace the config's data
    if "data" in data:
        data.setdefault("phases", [])
    return data


_SHOW_HINT = "`bootlab config show --defaults` prints every setting with its default"


def _explain(
    error: ValidationError, merged: Any, layers: list[tuple[Path, yamlfile.Located]]
) -> BootlabError:
    sources = [yamlfile.Source(str(path), located.lines) for path, located in layers]
    message = yamlfile.explain(
        error, merged, sources, known_keys=_KNOWN_KEYS, unknown="unknown setting"
    )
    return die(message, hint=_SHOW_HINT)


def initial_text(gpu_count: int, profile_name: str) -> str:
    """The admin's first config file: defaults chosen for this machine, every key explained."""
    gpus = gpu_count or "auto"
    return f"""\
# bootlab appliance settings, written by `bootlab config init` for: {profile_name}
# The image's defaults are in /usr/share/bootlab/config.yaml; what is set here wins.
# `bootlab config show` prints the settings in effect.

serve:
  # auto: by the model's files (safetensors → vllm, GGUF → llama-cpp); or name one.
  backend: auto
  # A model from the store (`bootlab models`); serving refuses to start without one.
  model: null
  host: 127.0.0.1
  port: 8000
  gpus: {gpus}
  # max_model_len: 4096          # at most the model's max_position_embeddings
  # api_key_file: /etc/bootlab/serve-api-key
  vllm_args: []                 # e.g. [--gpu-memory-utilization, "0.9"]
  llama_cpp_args: []

train:
  # The student model from the store, and its data (`bootlab data import`).
  model: null
  data: null                    # one phase; or LAB's two:
  # phases:
  #   - {{name: knowledge, data: my-knowledge, epochs: 2, learning_rate: 2.0e-5}}
  #   - {{name: skills, data: my-skills, epochs: 2, learning_rate: 1.0e-5}}
  # output: my-model-tuned      # its name in the store when done
  # lora: {{rank: 8}}              # adapters instead of a full fine-tune
  gpus: {gpus}
"""


def write_initial(paths: Paths, text: str, *, force: bool) -> Path | None:
    """Write the admin's file atomically; an existing one is kept unless `force`, and then
    saved aside first. Returns where the old file went."""
    target = paths.config_file
    backup = None
    if target.exists():
        if not force:
            raise die(
                f"{target} already exists",
                hint="edit it, or run `bootlab config init --force` (the old file is kept aside)",
                exit_code=Exit.CONFLICT,
            )
        backup = files.keep_aside(target, "bak")
    files.write_atomic(target, text.encode(), 0o644)
    load(paths)  # what we wrote must load; a failure here is a bug worth seeing
    return backup
