"""The resolved job, handed from the appliance's preflight to the ML worker as JSON: plain
values only (paths, numbers), so the worker needs neither pydantic nor the config."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PhasePlan:
    name: str
    data: str  # the dataset's data.jsonl
    epochs: int
    learning_rate: float
    effective_batch_size: int
    warmup_steps: int


@dataclass(frozen=True)
class LoRAPlan:
    rank: int
    alpha: int
    dropout: float
    target_modules: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    job: str
    # Everything that changes the numbers (model, data, hyperparameters): a checkpoint
    # directory made under another fingerprint is never resumed from.
    fingerprint: str
    model_dir: str
    output: str
    checkpoints: str
    phases: tuple[PhasePlan, ...]
    max_seq_len: int
    max_batch_len: int
    checkpoint_every: int
    keep_checkpoints: int
    held_out: float
    seed: int
    precision: str
    gpus: int
    processes: int  # torchrun ranks: one a GPU (gloo on CPU when asked)
    zero_stage: int | str = "auto"
    offload: str = "auto"
    lora: LoRAPlan | None = None
    # Multiple-choice items ({question, choices, answer}) that pick each phase's best epoch.
    selection: tuple[dict[str, Any], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        document = json.loads(text)
        document["phases"] = tuple(PhasePlan(**phase) for phase in document["phases"])
        document["selection"] = tuple(document.get("selection") or ())
        if document.get("lora"):
            lora = document["lora"]
            document["lora"] = LoRAPlan(**{**lora, "target_modules": tuple(lora["target_modules"])})
        return cls(**document)

    @classmethod
    def read(cls, path: Path) -> Plan:
        return cls.from_json(path.read_text())
