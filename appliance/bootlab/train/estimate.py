"""How much memory and disk a job needs, from the model's config.json and the size of its
weights, before anything is loaded. Rough on purpose (within tens of percent): enough to
refuse a job that cannot fit and to say what would make it fit.

Per parameter, full fine-tuning with AdamW keeps fp32 weights, gradients and two moments:
16 bytes. LoRA keeps the base weights frozen and trains adapters of a few million
parameters. Activations grow with the tokens of one micro-batch; the logits over the
vocabulary are a large part of them for small models with big vocabularies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GIB = 2**30
USABLE = 0.9  # of RAM or VRAM: the rest is the runtime's, the allocator's, the system's
_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclass(frozen=True)
class Estimate:
    params: int
    trainable: int
    model_state: int  # weights, gradients and optimizer state, one full replica
    activations: int  # one micro-batch, forward and backward
    resume_checkpoint: int
    candidate: int  # the model after an epoch
    final: int  # the published model

    def cpu_need(self) -> int:
        return self.model_state + self.activations

    def disk_need(self, keep: int, epochs: int) -> int:
        # keep + 1: a new checkpoint is whole before the oldest is removed.
        return self.resume_checkpoint * (keep + 1) + self.candidate * epochs + self.final


def estimate(
    config: dict[str, Any],
    weights_bytes: int,
    *,
    max_batch_len: int,
    lora_rank: int | None,
    lora_modules: int = 4,
    bf16: bool = False,
) -> Estimate:
    dtype = str(config.get("dtype") or config.get("torch_dtype") or "bfloat16")
    params = weights_bytes // _DTYPE_BYTES.get(dtype, 2)
    hidden = int(config.get("hidden_size") or 4096)
    layers = int(config.get("num_hidden_layers") or 32)
    vocab = int(config.get("vocab_size") or 32000)
    if lora_rank is None:
        trainable = params
        model_state = 16 * params
    else:
        trainable = layers * lora_modules * lora_rank * 2 * hidden
        model_state = (2 if bf16 else 4) * params + 16 * trainable
    per_token_layer = 34 if bf16 else 68  # bytes of saved activations (Korthikanti et al.)
    activations = max_batch_len * (layers * hidden * per_token_layer + vocab * 4 * 2)
    return Estimate(
        params=params,
        trainable=trainable,
        model_state=model_state,
        activations=activations,
        resume_checkpoint=12 * trainable,  # fp32 weights (or adapters) and two moments
        candidate=4 * trainable,
        final=2 * params if dtype != "float32" else 4 * params,
    )


@dataclass(frozen=True)
class ZeroPlan:
    stage: int
    offload: bool
    per_gpu: int


def zero_plan(
    estimate: Estimate, gpus: int, vram: int, stage: int | None = None, offload: bool | None = None
) -> ZeroPlan | None:
    """The least sharding whose per-GPU memory fits (DeepSpeed ZeRO: stage 1 shards the
    optimizer state, 2 the gradients too, 3 the weights too; offload moves the optimizer to
    CPU memory). None when nothing fits."""
    weights, grads, optimizer = (
        4 * estimate.trainable,
        4 * estimate.trainable,
        8 * estimate.trainable,
    )
    frozen = estimate.model_state - weights - grads - optimizer
    stages = [stage] if stage is not None else [0, 1, 2, 3]
    offloads = [offload] if offload is not None else [False, True]
    for use_offload in offloads:
        for candidate in stages:
            kept = {
                0: weights + grads + optimizer,
                1: weights + grads + optimizer / gpus,
                2: weights + (grads + optimizer) / gpus,
                3: (weights + grads + optimizer) / gpus,
            }[candidate]
            if use_offload:
                kept -= optimizer / (gpus if candidate else 1)
            per_gpu = int(kept + frozen / (gpus if candidate == 3 else 1) + estimate.activations)
            if per_gpu <= vram * USABLE:
                return ZeroPlan(candidate, use_offload, per_gpu)
    return None
