"""Benchmark: `bootlab train` against a plain transformers `Trainer` script, on the tiny
model, on CPU, in one run.

Both train the same model on the same conversations (one epoch, the same effective batch,
the same learning rate schedule, a checkpoint every CHECKPOINT_EVERY steps with optimizer
state) and save the final model; each is timed from its process start to its exit, so
imports, tokenising and saving count for both. Tokens are the samples' own tokens (the
baseline's padding is its cost, not extra work done). Peak RSS is the largest process of
each run's tree (rusage of the waited-for children: for bootlab, its ML worker).
The harness interleaves the baseline (A) and bootlab (B) in 5 rounds. Then a bootlab job is
killed (SIGKILL, every process) half-way and started again: the steps it lost are those
between its last checkpoint and the kill.

Prints one JSON object as its last stdout line: baseline_tok_s, bootlab_tok_s, ratio (goal
>= 1.0) with its spread and control (baseline against baseline), peak_rss_ratio (goal <=
1.05), resume_lost_steps (goal <= checkpoint interval). `--quick`: 8 steps of 32 samples, a
checkpoint every 2, 2 rounds.

Usage: python -m bench.train [--quick]
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bootlab import datasets
from bootlab.paths import Paths

from bench import harness
from tests.support.tiny_model import ML_VENV, appliance_with_tiny_model, tiny_model
from tests.support.train_data import write

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 5  # 10 training runs: twice the pairs of the 3 rounds before, not 3x the time
BATCH, LEARNING_RATE, SEED = 32, 1e-3, 42


@dataclasses.dataclass(frozen=True)
class Size:
    samples: int
    checkpoint_every: int

    @property
    def steps(self) -> int:
        return self.samples // BATCH


FULL, QUICK = Size(1536, 16), Size(256, 2)

JOB = f"""\
train:
  model: tiny
  job: {{job}}
  phases:
    - {{{{name: train, data: bench, epochs: 1, learning_rate: {LEARNING_RATE},
       effective_batch_size: {BATCH}}}}}
  max_seq_len: 256
  max_batch_len: 8192
  checkpoint_every: {{checkpoint_every}}
  keep_checkpoints: 2
  held_out: 0
  seed: {SEED}
"""

# The baseline, as a user would write it with transformers alone.
BASELINE = r"""
import json, sys, torch
from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq,
                          Trainer, TrainingArguments)
model_dir, data, out, batch, lr, every, seed = sys.argv[1:8]
tokenizer = AutoTokenizer.from_pretrained(model_dir)
tokenizer.pad_token = tokenizer.eos_token
rows = []
for line in open(data):
    ids = tokenizer.apply_chat_template(json.loads(line)["messages"], tokenize=True,
                                        return_dict=True)["input_ids"]
    rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": list(ids)})
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
args = TrainingArguments(
    output_dir=out, per_device_train_batch_size=int(batch), num_train_epochs=1,
    learning_rate=float(lr), lr_scheduler_type="cosine", weight_decay=0.0, max_grad_norm=1.0,
    save_strategy="steps", save_steps=int(every), save_total_limit=2, logging_strategy="no",
    report_to=[], seed=int(seed), use_cpu=True, disable_tqdm=True,
)
Trainer(model=model, args=args, train_dataset=rows,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True)).train()
model.save_pretrained(out + "/final")
tokenizer.save_pretrained(out + "/final")
print(json.dumps({"tokens": sum(len(r["input_ids"]) for r in rows)}))
"""


@dataclasses.dataclass(frozen=True)
class Result:
    seconds: float
    peak_rss: int  # bytes, the largest process of the run's tree
    tokens: int


def timed(bench: harness.Bench, argv: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Wall seconds, the peak RSS (bytes) of the largest process of the tree, stdout."""
    started = time.monotonic()
    with bench.spawn(argv, env=env, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        out = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed with {process.returncode}")
    return time.monotonic() - started, usage.ru_maxrss * 1024, out


def baseline(bench: harness.Bench, size: Size, model: Path, data: Path, index: int) -> Result:
    out = bench.root / f"baseline-{index}"
    seconds, rss, printed = timed(
        bench,
        [
            str(ML_VENV / "bin" / "python"),
            "-c",
            BASELINE,
            str(model),
            str(data),
            str(out),
            str(BATCH),
            str(LEARNING_RATE),
            str(size.checkpoint_every),
            str(SEED),
        ],
        {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"},
    )
    return Result(seconds, rss, int(json.loads(printed.splitlines()[-1])["tokens"]))


def bootlab_env(paths: Paths, notify: str | None = None) -> dict[str, str]:
    env = {**os.environ, "BOOTLAB_ROOT": str(paths.root), "PYTHONPATH": str(ROOT / "appliance")}
    if notify:
        env["NOTIFY_SOCKET"] = notify
    return env


def configure(paths: Paths, size: Size, job: str) -> None:
    paths.config_file.write_text(JOB.format(job=job, checkpoint_every=size.checkpoint_every))


def bootlab(bench: harness.Bench, size: Size, paths: Paths, index: int) -> Result:
    configure(paths, size, f"round-{index}")
    argv = [sys.executable, "-m", "bootlab.cli", "train", "run"]
    seconds, rss, _ = timed(bench, argv, bootlab_env(paths))
    status = json.loads((paths.runtime / "train.json").read_text())
    assert status["state"] == "done", status
    return Result(seconds, rss, int(status["progress"]["tokens"]))


def resume_lost_steps(bench: harness.Bench, size: Size, paths: Paths) -> int:
    """Kill a job half-way (every process, as `systemctl kill -s KILL`), start it again and
    read where it resumed from its READY status."""
    configure(paths, size, "killed")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(bench.root / "notify"))
    receiver.settimeout(600)
    env = bootlab_env(paths, str(bench.root / "notify"))
    argv = [sys.executable, "-m", "bootlab.cli", "train", "run"]
    killed_at = 0
    with bench.spawn(argv, env=env) as process:
        while process.poll() is None:
            try:
                status = json.loads((paths.runtime / "train.json").read_text())
            except (OSError, ValueError):
                status = {}
            step = (
                int((status.get("progress") or {}).get("step", 0))
                if status.get("job") == "killed"
                else 0
            )
            if step >= size.steps // 2:
                os.killpg(process.pid, signal.SIGKILL)
                killed_at = step
                break
            time.sleep(0.02)
        process.wait()
    assert killed_at, "the job ended before it could be killed"
    resumed_from = None
    with bench.spawn(argv, env=env) as again:
        while resumed_from is None:
            message = receiver.recv(4096).decode()
            if "resuming at phase 1 step " in message:
                resumed_from = int(message.split("resuming at phase 1 step ")[1].split()[0])
        if again.wait() != 0:
            raise SystemExit("the resumed job failed")
    receiver.close()
    return killed_at - resumed_from


def measure(bench: harness.Bench) -> dict[str, object]:
    size = QUICK if bench.quick else FULL
    hf, _ = tiny_model()
    paths = appliance_with_tiny_model(bench.root / "root")
    data = write(bench.root / "bench.jsonl", "knowledge", size.samples // 2)
    with data.open("a") as more:  # both kinds of sample: lengths vary within a batch
        more.write((write(bench.root / "s.jsonl", "skills", size.samples // 2)).read_text())
    datasets.import_file(paths.state, data, "bench")
    results: dict[str, list[Result]] = {harness.A: [], harness.B: []}

    def run(side: str, index: int) -> float:
        """One training run's tokens a second: the baseline's (A) or bootlab's (B)."""
        if side == harness.A:
            result = baseline(bench, size, hf, data, index)
        else:
            result = bootlab(bench, size, paths, index)
        results[side].append(result)
        return result.tokens / result.seconds

    runs = bench.interleave(2 if bench.quick else ROUNDS, run)
    lost = resume_lost_steps(bench, size, paths)
    tokens = {side: {result.tokens for result in done} for side, done in results.items()}
    assert tokens[harness.A] == tokens[harness.B], tokens  # the same work on both sides
    rss = {side: max(result.peak_rss for result in done) for side, done in results.items()}
    return {
        "steps": size.steps,
        "tokens": tokens[harness.B].pop(),
        "baseline_s": [round(result.seconds, 2) for result in results[harness.A]],
        "bootlab_s": [round(result.seconds, 2) for result in results[harness.B]],
        "baseline_tok_s": round(statistics.median(runs.values(harness.A)), 1),
        "bootlab_tok_s": round(statistics.median(runs.values(harness.B)), 1),
        **runs.figures(),
        "baseline_peak_rss_mib": round(rss[harness.A] / 2**20, 1),
        "bootlab_peak_rss_mib": round(rss[harness.B] / 2**20, 1),
        "peak_rss_ratio": round(rss[harness.B] / rss[harness.A], 3),
        "checkpoint_every": size.checkpoint_every,
        "resume_lost_steps": lost,
        "goals": {
            "ratio": 1.0,
            "peak_rss_ratio": 1.05,
            "resume_lost_steps": size.checkpoint_every,
        },
    }


if __name__ == "__main__":
    harness.command_line("train", __doc__, measure)
