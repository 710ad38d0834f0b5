"""Training's preflight, in the appliance: everything that can be refused before the ML
worker starts. The model is in the store and whole, every phase's dataset is imported, the
context fits the model, the job fits the memory (RAM on CPU; VRAM with a ZeRO plan on
GPUs) and its checkpoints fit the disk. The outcome is a `Plan` for the worker."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path

from bootlab import datasets, files, text
from bootlab.config import Config, Train
from bootlab.errors import Exit, die
from bootlab.modelinfo import hf_config, weights_bytes
from bootlab.paths import Paths
from bootlab.store.layout import model_store
from bootlab.sysinfo import SystemInfo
from bootlab.train import estimate
from bootlab.train.checkpoint import CheckpointError, Checkpoints
from bootlab.train.plan import LoRAPlan, PhasePlan, Plan
from bootlab.workload.launch import gpu_count, ml_python, store_model

# The settings the worker takes as they are; the plan resolves the others.
_AS_SET = {
    "max_seq_len",
    "max_batch_len",
    "checkpoint_every",
    "keep_checkpoints",
    "held_out",
    "seed",
    "precision",
}


def checkpoints_root(paths: Paths) -> Path:
    return paths.state / "checkpoints"


def plan_file(paths: Paths) -> Path:
    return paths.runtime / "train.plan.json"


def plan(config: Config, paths: Paths, system: SystemInfo) -> tuple[str, Plan]:
    """The ML venv's Python and the job to give it."""
    train = config.train
    model = store_model(config, paths, train.model, "train.model", "train")
    phases = train.resolved_phases()
    if not phases:
        raise die(
            f"no training data: neither train.data nor train.phases is set in {paths.config_file}",
            hint="import data (`bootlab data import FILE.jsonl --name NAME`) and set train.data",
            exit_code=Exit.NOT_CONFIGURED,
        )
    python = ml_python(paths, "transformers", "the training stack (torch, transformers)")
    found = [_dataset(paths, phase.data, f"phase {phase.name}") for phase in phases]
    model_config = hf_config(model)
    limit = model_config.get("max_position_embeddings")
    if isinstance(limit, int) and train.max_seq_len > limit:
        raise die(
            f"train.max_seq_len {train.max_seq_len} is above what model '{train.model}' "
            f"supports ({limit}, its max_position_embeddings)",
            hint=f"set train.max_seq_len: {limit} or less",
            exit_code=Exit.NOT_CONFIGURED,
        )
    gpus = gpu_count("train.gpus", train.gpus, system)
    processes = _processes(train, gpus)
    need = estimate.estimate(
        model_config,
        weights_bytes(model.resolve()),
        max_batch_len=train.max_batch_len,
        lora_rank=train.lora.rank if train.lora else None,
        lora_modules=len(train.lora.target_modules) if train.lora else 4,
        bf16=gpus > 0 and train.precision != "fp32",
    )
    zero = _check_memory(train, need, gpus, processes, system)
    job = train.job_name()
    assert job is not None and train.model is not None
    checkpoints = checkpoints_root(paths) / job
    _check_disk(checkpoints, need, train, sum(phase.epochs for phase in phases))
    fingerprint = _fingerprint(config, paths, train, found)
    try:
        Checkpoints(checkpoints, job, fingerprint).claim()
    except CheckpointError as error:
        raise die(error.message, hint=error.hint, exit_code=Exit.NOT_CONFIGURED) from None
    job_plan = Plan(
        job=job,
        fingerprint=fingerprint,
        model_dir=str(model.resolve()),
        output=train.output_name() or job,
        checkpoints=str(checkpoints),
        phases=tuple(
            PhasePlan(
                **phase.model_dump(exclude={"data"}),
                data=str(datasets.directory(paths.state) / phase.data / "data.jsonl"),
            )
            for phase in phases
        ),
        **train.model_dump(include=_AS_SET),
        gpus=gpus,
        processes=processes,
        zero_stage=zero.stage if zero else _cpu_stage(train, processes),
        offload="cpu" if (zero.offload if zero else train.offload == "cpu") else "none",
        lora=LoRAPlan(**train.lora.model_dump()) if train.lora else None,
        selection=_selection(train),
    )
    return python, job_plan


def _selection(train: Train) -> tuple[dict[str, object], ...]:
    if train.select_with is None:
        return ()
    from bootlab.evaluate import tasks  # noqa: PLC0415

    kind, items = tasks.load(Path(train.select_with))
    if kind != "choice":
        raise die(
            f"train.select_with: {train.select_with} holds judged questions; selecting "
            "epochs needs multiple choice (scored without a judge)",
            hint="give a multiple-choice benchmark, or remove train.select_with",
            exit_code=Exit.NOT_CONFIGURED,
        )
    return tuple(asdict(item) for item in items)


def _dataset(paths: Paths, name: str, where: str) -> datasets.Dataset:
    try:
        return datasets.get(paths.state, name)
    except Exception as error:  # the datasets module's message, as a configuration problem
        raise die(
            f"{where} trains on dataset '{name}', which is not imported",
            hint="import it (`bootlab data import FILE.jsonl --name NAME`); `bootlab data "
            "list` shows what is there",
            exit_code=Exit.NOT_CONFIGURED,
        ) from error


def _processes(train: Train, gpus: int) -> int:
    """torchrun ranks: one a GPU; on CPU one unless asked for more."""
    if train.processes == "auto":
        return max(gpus, 1)
    if gpus and train.processes != gpus:
        raise die(
            f"train.processes is {train.processes} for {gpus} GPU(s): on GPUs it is one "
            "process a GPU",
            hint="set train.processes: auto, or train.gpus: 0 to train in CPU processes",
            exit_code=Exit.NOT_CONFIGURED,
        )
    return train.processes


def _cpu_stage(train: Train, processes: int) -> int:
    """Several processes on CPU are there to split the model: full sharding unless asked."""
    if processes == 1:
        return 0
    return 3 if train.zero_stage == "auto" else int(train.zero_stage)


def _check_memory(
    train: Train, need: estimate.Estimate, gpus: int, processes: int, system: SystemInfo
) -> estimate.ZeroPlan | None:
    advice = []
    if train.lora is None:
        advice.append("train LoRA adapters instead (train.lora: {rank: 8})")
    advice.append(f"lower train.max_batch_len (now {train.max_batch_len})")
    if gpus == 0:
        memory = system.memory_available_mib * 2**20
        # Processes on one machine share its memory: sharding splits the model state
        # between them, and each has its own activations.
        total = need.cpu_need() + (processes - 1) * need.activations
        if total > memory * estimate.USABLE:
            raise die(
                f"this job needs about {text.size(total)} of memory "
                f"({text.size(need.model_state)} for weights, gradients and optimizer, "
                f"{text.size(need.activations)} for activations) and "
                f"{text.size(memory)} is available",
                hint="; or ".join(advice),
                exit_code=Exit.NOT_CONFIGURED,
            )
        return None
    vram = min(gpu.memory_mib for gpu in system.gpus) * 2**20
    stage = None if train.zero_stage == "auto" else int(train.zero_stage)
    offload = None if train.offload == "auto" else train.offload == "cpu"
    zero = estimate.zero_plan(need, processes, vram, stage, offload)
    if zero is None:
        raise die(
            f"this job needs about {text.size(need.model_state + need.activations)} of GPU "
            f"memory and {gpus} GPU(s) of {text.size(vram)} cannot hold it, even sharded "
            "with ZeRO stage 3 and the optimizer offloaded to CPU memory",
            hint="; or ".join(advice),
            exit_code=Exit.NOT_CONFIGURED,
        )
    return zero


def _check_disk(checkpoints: Path, need: estimate.Estimate, train: Train, epochs: int) -> None:
    total = need.disk_need(train.keep_checkpoints, epochs)
    existing = _usage(checkpoints)
    probe = checkpoints
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if total - existing > free:
        raise die(
            f"this job's checkpoints need about {text.size(total)} under {checkpoints.parent} "
            f"and {text.size(free)} is free",
            hint="free space (`bootlab model gc`, old jobs under "
            f"{checkpoints.parent}), lower train.keep_checkpoints, or use LoRA",
            exit_code=Exit.NOT_CONFIGURED,
        )


def _usage(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def _fingerprint(config: Config, paths: Paths, train: Train, found: list[datasets.Dataset]) -> str:
    """What makes the numbers: the model's files, the data and the hyperparameters (not
    where or how often checkpoints go)."""
    assert train.model is not None
    record = model_store(paths, config.models.directory).record(train.model)
    document = {
        "model": sorted((path, entry.digest) for path, entry in record.files.items()),
        "data": [dataset.sha256 for dataset in found],
        "train": train.model_dump(
            mode="json",
            exclude={
                "job",
                "output",
                "checkpoint_every",
                "keep_checkpoints",
                "gpus",
                "data",
                "zero_stage",
                "offload",
            },
        ),
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def write(paths: Paths, job_plan: Plan) -> Path:
    files.write_atomic(plan_file(paths), job_plan.to_json().encode(), 0o644)
    return plan_file(paths)
