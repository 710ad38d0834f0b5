"""Several training processes (torchrun ranks, one a GPU; gloo on CPU): the model sharded
with torch FSDP (ZeRO stage 3 reshards the weights after each forward, lower stages keep
them; offload keeps the shards in CPU memory), each micro-batch's rows dealt out between
the ranks, and state gathered to rank 0, which alone writes checkpoints and reports.

With one process every method is the identity, so the single-device path is the same code."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from bootlab.train.batching import MicroBatch


class Ranks:
    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device_type = "cpu"

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.world > 1

    def start(self, device: torch.device) -> None:
        if not self.several:
            return
        self.device_type = device.type
        backend = "nccl" if device.type == "cuda" else "gloo"
        # Checkpoints of a large model take a while on rank 0 while the others wait.
        dist.init_process_group(backend, timeout=timedelta(minutes=60))

    def stop(self) -> None:
        if self.several and dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        if self.several:
            dist.barrier()

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when it is true on one (a stop must be agreed on: a rank
        that stops alone leaves the others waiting in a collective)."""
        if not self.several:
            return flag
        value = torch.tensor([1 if flag else 0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def total(self, number: float, device: torch.device) -> float:
        if not self.several:
            return number
        value = torch.tensor([number], dtype=torch.float64, device=device)
        dist.all_reduce(value)
        return float(value.item())

    def mine(self, batch: MicroBatch) -> MicroBatch:
        """This rank's rows of the micro-batch. Every rank runs every micro-batch (FSDP's
        collectives need the same number of forwards): one without rows gets a row of
        padding, which carries no loss."""
        if not self.several:
            return batch
        rows = batch.rows[self.rank :: self.world]
        return MicroBatch(rows or [[]], batch.width)

    def shard(self, model: Any, *, stage: int, offload: bool) -> Any:
        if not self.several:
            return model
        from torch.distributed.device_mesh import init_device_mesh  # noqa: PLC0415
        from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard  # noqa: PLC0415

        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        layer_classes = set(getattr(base, "_no_split_modules", None) or [])
        # The mesh is on the device the job trains on: fully_shard's default takes CUDA
        # whenever torch sees a GPU, also for ranks training on CPU.
        mesh = init_device_mesh(self.device_type, (self.world,))
        options: dict[str, Any] = {"reshard_after_forward": stage >= 3, "mesh": mesh}
        if offload:
            options["offload_policy"] = CPUOffloadPolicy()
        for module in model.modules():
            if type(module).__name__ in layer_classes:
                fully_shard(module, **options)
        fully_shard(model, **options)
        return model

    def model_state(self, model: Any) -> dict[str, Any] | None:
        """The whole model's weights on rank 0 (None elsewhere); every rank must call it."""
        if not self.several:
            return None
        from torch.distributed.checkpoint.state_dict import (  # noqa: PLC0415
            StateDictOptions,
            get_model_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        state = get_model_state_dict(model, options=options)
        return state if self.main else None

    def optimizer_state(self, model: Any, optimizer: Any) -> dict[str, Any]:
        if not self.several:
            return dict(optimizer.state_dict())
        from torch.distributed.checkpoint.state_dict import (  # noqa: PLC0415
            StateDictOptions,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return dict(get_optimizer_state_dict(model, optimizer, options=options))

    def load_optimizer_state(self, model: Any, optimizer: Any, state: dict[str, Any]) -> None:
        if not self.several:
            optimizer.load_state_dict(state)
            return
        from torch.distributed.checkpoint.state_dict import (  # noqa: PLC0415
            StateDictOptions,
            set_optimizer_state_dict,
        )

        set_optimizer_state_dict(
            model, optimizer, state, options=StateDictOptions(full_state_dict=True)
        )
