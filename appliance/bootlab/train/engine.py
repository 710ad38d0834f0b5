"""The training loop, on transformers and torch: the same code on CPU and GPU.

A step takes `effective_batch_size` samples, packs them into micro-batches of at most
`max_batch_len` tokens with no padding (position ids restart at each sample, and
transformers builds the block-diagonal causal mask from them), and accumulates gradients
so that the loss is the mean over every assistant token of the step, however the samples
were packed. Sample order comes from the seed, the phase and the epoch alone, so a resumed
job sees the same batches, and with the optimizer, scheduler and RNG restored, the same
losses as a job that was never interrupted."""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, get_scheduler

from bootlab.evaluate.worker import pick
from bootlab.train import tokens
from bootlab.train.batching import MicroBatch, epoch_order, micro_batches, split
from bootlab.train.checkpoint import FORMAT, STATE, Checkpoints, write_json
from bootlab.train.distributed import Ranks
from bootlab.train.events import Events
from bootlab.train.plan import Plan
from bootlab.train.tokens import IGNORE, Sample

MAX_GRAD_NORM = 1.0


class Stopped(Exception):
    """Asked to stop (SIGTERM): the state is saved, the job resumes at the next start."""


def collate(batch: MicroBatch, pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """The rows as tensors. Position ids restart at each sample, which is all the model
    needs to keep packed samples from attending to each other (transformers builds the
    block-diagonal mask from them); the padding at a row's end is a sequence of its own,
    with no labels."""
    input_ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for row in batch.rows:
        used = 0
        for sample in row:
            input_ids.extend(sample.input_ids)
            labels.extend(sample.labels)
            positions.extend(range(len(sample.input_ids)))
            used += len(sample.input_ids)
        padding = batch.width - used
        input_ids.extend([pad_id] * padding)
        labels.extend([IGNORE] * padding)
        positions.extend(range(padding))
    shape = (len(batch.rows), batch.width)
    return {
        "input_ids": torch.tensor(input_ids, device=device).view(shape),
        "labels": torch.tensor(labels, device=device).view(shape),
        "position_ids": torch.tensor(positions, device=device).view(shape),
    }


def forward(
    model: Any, batch: MicroBatch, pad_id: int, device: torch.device, trained: int
) -> torch.Tensor:
    """The micro-batch's share of the step's loss: summed over its assistant tokens and
    divided by `trained`, the step's count, so micro-batches of any packing add up to the
    step's mean. No KV cache: transformers isolates packed samples only without one."""
    output = model(**collate(batch, pad_id, device), num_items_in_batch=trained, use_cache=False)
    return output.loss


def _device(plan: Plan, ranks: Ranks) -> torch.device:
    if plan.gpus != 0 and torch.cuda.is_available():
        torch.cuda.set_device(ranks.local_rank)
        return torch.device("cuda", ranks.local_rank)
    return torch.device("cpu")


def _autocast_dtype(plan: Plan, device: torch.device) -> torch.dtype | None:
    if plan.precision == "bf16":
        return torch.bfloat16
    if plan.precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def describe_device(device: torch.device, autocast: torch.dtype | None, world: int) -> str:
    """Where the job runs, for the log: "is it on my GPUs?" is an admin's first question."""
    precision = "bf16 autocast" if autocast == torch.bfloat16 else "fp32"
    if device.type == "cuda":
        return f"{world} x {torch.cuda.get_device_name(device)}, {precision}"
    return f"CPU ({world} process{'es' if world > 1 else ''}), {precision}"


def peak_gpu_mib(device: torch.device) -> int | None:
    """This rank's peak GPU memory so far (tensors, not the allocator's cache)."""
    if device.type != "cuda":
        return None
    return int(torch.cuda.max_memory_allocated(device)) // 2**20


class Trainer:
    def __init__(self, plan: Plan, events: Events, stopping: threading.Event) -> None:
        self.plan = plan
        self.events = events
        self.stopping = stopping
        self.ranks = Ranks()
        self.device = _device(plan, self.ranks)
        self.ranks.start(self.device)
        self.autocast = _autocast_dtype(plan, self.device)
        self.checkpoints = Checkpoints(Path(plan.checkpoints), plan.job, plan.fingerprint)
        self.tokenizer = AutoTokenizer.from_pretrained(plan.model_dir)
        self.pad_id = int(
            next(
                (
                    t
                    for t in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id)
                    if t is not None
                ),
                0,
            )
        )
        # Every dataset is tokenised and checked before the first step: a bad line in the
        # skills data fails the start, not phase 2 hours later.
        self.data = [
            tokens.load(self.tokenizer, Path(phase.data), plan.max_seq_len) for phase in plan.phases
        ]
        self.started = time.monotonic()
        self.tokens_seen = 0
        self.steps_done = 0  # in this run, for the rate and the ETA

    # The job ---------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        if self.ranks.main:
            self.checkpoints.claim()
        self.ranks.barrier()
        result_file = self.checkpoints.root / "result.json"
        if result_file.exists():
            result: dict[str, Any] = json.loads(result_file.read_text())
            self.events.emit("ready", job=self.plan.job, resumed=None, finished=True)
            return result
        latest = self.checkpoints.latest()
        state: dict[str, Any] = (
            latest[1]
            if latest
            else {"phase": 0, "step": 0, "candidates": {}, "history": [], "tokens": 0}
        )
        resume_dir = latest[0] if latest else None
        self.events.emit(
            "ready",
            job=self.plan.job,
            resumed={"phase": state["phase"], "step": state["step"]} if latest else None,
            phases=[phase.name for phase in self.plan.phases],
            samples=[len(data) for data in self.data],
            device=describe_device(self.device, self.autocast, self.ranks.world),
        )
        for index in range(state["phase"], len(self.plan.phases)):
            self._phase(index, state, resume_dir if index == state["phase"] else None)
            state.update(phase=index + 1, step=0)
            resume_dir = None
        result = {
            "final": str(self.checkpoints.final),
            "best": {phase.name: self._best(i, state) for i, phase in enumerate(self.plan.phases)},
            "history": state["history"],
        }
        if self.ranks.main:
            self._save_final(self._best(len(self.plan.phases) - 1, state))
            write_json(result_file, result)
        self.ranks.barrier()
        return result

    # A phase ---------------------------------------------------------------------------------

    def _phase(self, index: int, state: dict[str, Any], resume_dir: Path | None) -> None:
        phase = self.plan.phases[index]
        data = self.data[index]
        train, held = split(len(data), self.plan.held_out, self.plan.seed, index)
        per_epoch = math.ceil(len(train) / phase.effective_batch_size)
        total = per_epoch * phase.epochs
        if resume_dir is not None:
            model = self._load(resume_dir / "model", adapter=self.plan.lora is not None)
        elif index > 0:
            start = Path(self._best(index - 1, state)["path"])
            model = self._load(start, adapter=self.plan.lora is not None)
        else:
            model = self._load(Path(self.plan.model_dir), adapter=False)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=phase.learning_rate, weight_decay=0.0)
        scheduler = get_scheduler(
            "cosine",
            optimizer,
            num_warmup_steps=min(phase.warmup_steps, total),
            num_training_steps=total,
        )
        if resume_dir is not None:
            saved = torch.load(resume_dir / "optimizer.pt", weights_only=True)
            self.ranks.load_optimizer_state(model, optimizer, saved)
            scheduler.load_state_dict(torch.load(resume_dir / "scheduler.pt", weights_only=True))
            _set_rng(torch.load(resume_dir / "rng.pt", weights_only=True))
        else:
            torch.manual_seed(self.plan.seed + index)
        model.train()
        for step in range(state["step"], total):
            if self.ranks.any(self.stopping.is_set(), self.device):
                self._save_resume(index, state, model, optimizer, scheduler)
                raise Stopped
            epoch = step // per_epoch
            order = epoch_order(train, self.plan.seed, index, epoch)
            position = step % per_epoch
            chosen = order[
                position * phase.effective_batch_size : (position + 1) * phase.effective_batch_size
            ]
            began = time.monotonic()
            loss, processed = self._step(model, [data[i] for i in chosen], optimizer)
            scheduler.step()
            self.tokens_seen += processed
            state["tokens"] += processed
            state["step"] = step + 1
            state["history"].append([index, step + 1, loss])
            self._report(
                index=index,
                step=step + 1,
                total=total,
                epoch=epoch,
                loss=loss,
                seconds=time.monotonic() - began,
                learning_rate=scheduler.get_last_lr()[0],
                state=state,
            )
            candidate = None
            if (step + 1) % per_epoch == 0:
                candidate = self._end_epoch(
                    index=index,
                    epoch=epoch + 1,
                    step=step + 1,
                    model=model,
                    held=[data[i] for i in held],
                    state=state,
                    last_loss=loss,
                )
            if candidate or (step + 1) % self.plan.checkpoint_every == 0:
                self._save_resume(index, state, model, optimizer, scheduler, candidate=candidate)

    def _step(
        self, model: Any, samples: list[Sample], optimizer: torch.optim.Optimizer
    ) -> tuple[float, int]:
        trained = sum(sample.trained_tokens for sample in samples)
        total_loss = 0.0
        processed = 0
        for batch in micro_batches(samples, self.plan.max_batch_len):
            # The samples' own tokens: padding is a cost, not work done.
            processed += sum(len(sample.input_ids) for row in batch.rows for sample in row)
            with self._autocast():
                loss = forward(model, self.ranks.mine(batch), self.pad_id, self.device, trained)
            # FSDP averages gradients over the ranks; each rank's loss is its rows' share
            # of the step's mean, so scaling by the ranks makes the average their sum.
            (loss * self.ranks.world).backward()
            total_loss += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(
            [p for p in model.parameters() if p.requires_grad], MAX_GRAD_NORM
        )
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return self.ranks.total(total_loss, self.device), processed

    def _autocast(self) -> Any:
        if self.autocast is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast)

    def evaluate(self, model: Any, samples: list[Sample]) -> float | None:
        """Mean loss per assistant token over the held-out samples."""
        trained = sum(sample.trained_tokens for sample in samples)
        if not trained:
            return None
        model.eval()
        total = 0.0
        with torch.no_grad():
            for batch in micro_batches(samples, self.plan.max_batch_len):
                with self._autocast():
                    total += float(forward(model, batch, self.pad_id, self.device, trained))
        model.train()
        return total

    # Checkpoints -----------------------------------------------------------------------------

    def _end_epoch(
        self,
        *,
        index: int,
        epoch: int,
        step: int,
        model: Any,
        held: list[Sample],
        state: dict[str, Any],
        last_loss: float,
    ) -> Path:
        """The epoch's held-out loss, recorded with the candidate the resume checkpoint
        about to be written will hold."""
        phase = self.plan.phases[index].name
        held_loss = self.evaluate(model, held)
        score = self.benchmark(model)
        target = self.checkpoints.candidate(phase, epoch)
        candidates = state["candidates"].setdefault(phase, [])
        candidates[:] = [c for c in candidates if c["epoch"] != epoch]
        candidates.append(
            {
                "epoch": epoch,
                "step": step,
                "path": str(target),
                # Without held-out samples, the training loss is all there is to compare.
                "loss": held_loss if held_loss is not None else last_loss,
                "metric": "held_out_loss" if held_loss is not None else "train_loss",
                **({"score": score, "metric": "benchmark_accuracy"} if score is not None else {}),
            }
        )
        self.events.emit(
            "eval",
            phase=phase,
            epoch=epoch,
            loss=candidates[-1]["loss"],
            score=score,
            metric=candidates[-1]["metric"],
            path=str(target),
            peak_gpu_mib=peak_gpu_mib(self.device),
        )
        return target

    def _best(self, index: int, state: dict[str, Any]) -> dict[str, Any]:
        """The highest benchmark score when the job has one, else the lowest loss; the later
        epoch on a tie."""
        candidates = state["candidates"][self.plan.phases[index].name]
        if all("score" in c for c in candidates):
            return dict(max(candidates, key=lambda c: (c["score"], c["epoch"])))
        return dict(min(candidates, key=lambda c: (c["loss"], -c["epoch"])))

    def benchmark(self, model: Any) -> float | None:
        """Accuracy on the job's multiple-choice benchmark (train.select_with), if any."""
        if not self.plan.selection:
            return None
        model.eval()
        with torch.no_grad(), self._autocast():
            picks = [
                pick(model, self.tokenizer, item["question"], item["choices"], self.device)
                for item in self.plan.selection
            ]
        model.train()
        answers = [item["answer"] for item in self.plan.selection]
        correct = sum(p["pick"] == answer for p, answer in zip(picks, answers, strict=True))
        return float(correct) / len(answers)

    def _save_resume(
        self,
        index: int,
        state: dict[str, Any],
        model: Any,
        optimizer: Any,
        scheduler: Any,
        *,
        candidate: Path | None = None,
    ) -> None:
        """A resume point; at an epoch's end also the epoch's candidate, whose files are
        links to the checkpoint's weights (written once), made before the checkpoint is
        whole, so a checkpoint never names a candidate that is not there."""
        target = self.checkpoints.resume_name(index, state["step"])
        document = {**state, "format": FORMAT, "fingerprint": self.plan.fingerprint, "phase": index}
        # Said first: a big checkpoint takes minutes, which a stop waits for.
        self.events.emit("saving", path=str(target), phase=index, step=state["step"])

        # Gathered on every rank (the collectives need them all), written by rank 0.
        weights = self.ranks.model_state(model)
        moments = self.ranks.optimizer_state(model, optimizer)

        def fill(into: Path) -> None:
            self._save_model(model, into / "model", weights)
            if candidate is not None:
                self.checkpoints.save(candidate, lambda linked: _link_tree(into / "model", linked))
            torch.save(moments, into / "optimizer.pt")
            torch.save(scheduler.state_dict(), into / "scheduler.pt")
            torch.save(_get_rng(), into / "rng.pt")
            (into / STATE).write_text(json.dumps(document))

        if self.ranks.main:
            self.checkpoints.save(target, fill)
            self.checkpoints.prune(self.plan.keep_checkpoints)
        self.ranks.barrier()
        self.events.emit("checkpoint", path=str(target), phase=index, step=state["step"])

    def _save_model(self, model: Any, into: Path, weights: dict[str, Any] | None) -> None:
        """The weights (adapters, for LoRA) as a model directory, with the tokenizer, so a
        checkpoint loads, evaluates and serves like any model; `weights` gathered from the
        ranks when there are several."""
        if weights is None:
            model.save_pretrained(into, safe_serialization=True)
        else:
            model.save_pretrained(into, state_dict=weights, safe_serialization=True)
        if self.plan.lora is None:
            self.tokenizer.save_pretrained(into)

    def _save_final(self, best: dict[str, Any]) -> None:
        """Rank 0 alone, on CPU: the best candidate, merged when it holds adapters, in the
        dtype the model came in (bf16 halves the size); as links when it already is."""
        stored = json.loads(Path(self.plan.model_dir, "config.json").read_text())
        dtype = getattr(torch, str(stored.get("dtype") or stored.get("torch_dtype")), None)
        if not isinstance(dtype, torch.dtype):
            dtype = torch.float32
        if self.plan.lora is None and dtype == torch.float32:  # candidates are fp32

            def link(into: Path) -> None:
                _link_tree(Path(best["path"]), into)  # the tokenizer is in it

            self.checkpoints.save(self.checkpoints.final, link)
            return
        model = self._load(Path(best["path"]), adapter=self.plan.lora is not None, train=False)
        if self.plan.lora is not None:
            model = model.merge_and_unload()

        def fill(into: Path) -> None:
            model.to(dtype).save_pretrained(into, safe_serialization=True)
            self.tokenizer.save_pretrained(into)

        self.checkpoints.save(self.checkpoints.final, fill)

    # Models ----------------------------------------------------------------------------------

    def _load(self, path: Path, *, adapter: bool, train: bool = True) -> Any:
        """The base model (fp32 master weights), with LoRA adapters when the job asks: fresh
        ones on the base, or the saved ones of a checkpoint."""
        base_path = Path(self.plan.model_dir) if adapter else path
        model = AutoModelForCausalLM.from_pretrained(
            base_path, dtype=torch.float32, attn_implementation="sdpa"
        ).to(self.device if train else torch.device("cpu"))
        shard = self._shard if train else (lambda unsharded: unsharded)
        if self.plan.lora is None:
            return shard(model)
        from peft import LoraConfig, PeftModel, get_peft_model  # noqa: PLC0415 - LoRA jobs only

        if adapter:
            return shard(PeftModel.from_pretrained(model, path, is_trainable=train))
        lora = self.plan.lora
        return shard(
            get_peft_model(
                model,
                LoraConfig(
                    r=lora.rank,
                    lora_alpha=lora.alpha,
                    lora_dropout=lora.dropout,
                    target_modules=list(lora.target_modules),
                    task_type="CAUSAL_LM",
                ),
            )
        )

    def _shard(self, model: Any) -> Any:
        return self.ranks.shard(
            model, stage=int(self.plan.zero_stage), offload=self.plan.offload == "cpu"
        )

    # Progress --------------------------------------------------------------------------------

    def _report(
        self,
        *,
        index: int,
        step: int,
        total: int,
        epoch: int,
        loss: float,
        seconds: float,
        learning_rate: float,
        state: dict[str, Any],
    ) -> None:
        elapsed = time.monotonic() - self.started
        rate = self.tokens_seen / elapsed if elapsed > 0 else 0.0
        self.steps_done += 1
        per_step = elapsed / self.steps_done
        remaining = (total - step) + sum(
            self._steps_of(later) for later in range(index + 1, len(self.plan.phases))
        )
        self.events.emit(
            "step",
            phase=self.plan.phases[index].name,
            phase_index=index,
            phases=len(self.plan.phases),
            epoch=epoch + 1,
            step=step,
            steps=total,
            loss=loss,
            learning_rate=learning_rate,
            tokens=state["tokens"],
            tokens_per_s=rate,
            step_s=seconds,
            eta_s=remaining * per_step,
        )

    def _steps_of(self, index: int) -> int:
        phase = self.plan.phases[index]
        train, _ = split(len(self.data[index]), self.plan.held_out, self.plan.seed, index)
        return math.ceil(len(train) / phase.effective_batch_size) * phase.epochs


def _link_tree(source: Path, target: Path) -> None:
    """`source`'s files as hard links in `target` (the same filesystem: the job's directory)."""
    for path in source.rglob("*"):
        if path.is_file():
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, destination)


def _get_rng() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


__all__ = ["IGNORE", "Stopped", "Trainer", "collate", "forward"]
