"""Benchmark: `bootlab train` against a plain transformers `Trainer` script, on the tiny
model, on CPU, in one run.

Both train the same model on the same conversations (one epoch, the same effective batch,
the same learning rate schedule, a checkpoint every CHECKPOINT_EVERY steps with optimizer
state) and save the final model; each is timed from its process start to its exit, so
imports, tokenising and saving count for both. Tokens are the samples' own tokens (the
baseline's padding is its cost, not extra work done). Peak RSS is the largest process of
each run's tree (rusage of the waited-for children: for bootlab, its ML worker).
The order alternates per round; ratios are the median of each round's pair.
Then a bootlab job is killed (SIGKILL, every process) half-way and started again: the steps
it lost are those between its last checkpoint and the kill.

Prints one JSON object as its last stdout line: baseline_tok_s, bootlab_tok_s, ratio (goal
>= 1.0), peak_rss_ratio (goal <= 1.05), resume_lost_steps (goal <= checkpoint interval).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "appliance")]

from bootlab import datasets  # noqa: E402
from bootlab.paths import Paths  # noqa: E402
from tiny_model import ML_VENV, appliance_with_tiny_model, tiny_model  # noqa: E402
from train_data import write  # noqa: E402

ROUNDS = 3
SAMPLES, BATCH, LEARNING_RATE, CHECKPOINT_EVERY, SEED = 1536, 32, 1e-3, 16, 42
STEPS = SAMPLES // BATCH

JOB = f"""\
train:
  model: tiny
  job: {{job}}
  phases:
    - {{{{name: train, data: bench, epochs: 1, learning_rate: {LEARNING_RATE},
       effective_batch_size: {BATCH}}}}}
  max_seq_len: 256
  max_batch_len: 8192
  checkpoint_every: {CHECKPOINT_EVERY}
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


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Wall seconds, the peak RSS (bytes) of the largest process of the tree, stdout."""
    started = time.monotonic()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed with {process.returncode}")
    return time.monotonic() - started, usage.ru_maxrss * 1024, out


def baseline(model: Path, data: Path, scratch: Path, index: int) -> tuple[float, int, int]:
    out = scratch / f"baseline-{index}"
    seconds, rss, printed = timed(
        [
            str(ML_VENV / "bin" / "python"),
            "-c",
            BASELINE,
            str(model),
            str(data),
            str(out),
            str(BATCH),
            str(LEARNING_RATE),
            str(CHECKPOINT_EVERY),
            str(SEED),
        ],
        {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"},
    )
    return seconds, rss, int(json.loads(printed.splitlines()[-1])["tokens"])


def bootlab_env(paths: Paths, notify: str | None = None) -> dict[str, str]:
    env = {**os.environ, "BOOTLAB_ROOT": str(paths.root), "PYTHONPATH": str(ROOT / "appliance")}
    if notify:
        env["NOTIFY_SOCKET"] = notify
    return env


def bootlab(paths: Paths, index: int) -> tuple[float, int, int]:
    paths.config_file.write_text(JOB.format(job=f"round-{index}"))
    seconds, rss, _ = timed(
        [sys.executable, "-m", "bootlab.cli", "train", "run"], bootlab_env(paths)
    )
    status = json.loads((paths.runtime / "train.json").read_text())
    assert status["state"] == "done", status
    return seconds, rss, int(status["progress"]["tokens"])


def resume_lost_steps(paths: Paths, scratch: Path) -> int:
    """Kill a job half-way (every process, as `systemctl kill -s KILL`), start it again and
    read where it resumed from its READY status."""
    paths.config_file.write_text(JOB.format(job="killed"))
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(scratch / "notify"))
    receiver.settimeout(600)
    env = bootlab_env(paths, str(scratch / "notify"))
    argv = [sys.executable, "-m", "bootlab.cli", "train", "run"]
    process = subprocess.Popen(argv, env=env, start_new_session=True)
    killed_at = 0
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
        if step >= STEPS // 2:
            os.killpg(process.pid, signal.SIGKILL)
            killed_at = step
            break
        time.sleep(0.02)
    process.wait()
    assert killed_at, "the job ended before it could be killed"
    again = subprocess.Popen(argv, env=env)
    resumed_from = None
    while resumed_from is None:
        message = receiver.recv(4096).decode()
        if "resuming at phase 1 step " in message:
            resumed_from = int(message.split("resuming at phase 1 step ")[1].split()[0])
    if again.wait() != 0:
        raise SystemExit("the resumed job failed")
    return killed_at - resumed_from


def main() -> None:
    hf, _ = tiny_model()
    with tempfile.TemporaryDirectory(prefix="bootlab-train-") as tmp:
        scratch = Path(tmp)
        paths = appliance_with_tiny_model(scratch / "root")
        data = write(scratch / "bench.jsonl", "knowledge", SAMPLES // 2)
        with data.open("a") as more:  # both kinds of sample: lengths vary within a batch
            more.write((write(scratch / "s.jsonl", "skills", SAMPLES // 2)).read_text())
        datasets.import_file(paths.state, data, "bench")
        runs: dict[str, list[tuple[float, int, int]]] = {"baseline": [], "bootlab": []}
        for index in range(ROUNDS):
            order = ("baseline", "bootlab") if index % 2 == 0 else ("bootlab", "baseline")
            for which in order:
                runs[which].append(
                    baseline(hf, data, scratch, index)
                    if which == "baseline"
                    else bootlab(paths, index)
                )
        lost = resume_lost_steps(paths, scratch)
    tokens = {which: {t for _, _, t in results} for which, results in runs.items()}
    assert tokens["baseline"] == tokens["bootlab"], tokens  # the same work on both sides
    rates = {w: [t / s for s, _, t in results] for w, results in runs.items()}
    pairs = list(zip(rates["baseline"], rates["bootlab"], strict=True))
    rss = {w: [r for _, r, _ in results] for w, results in runs.items()}
    print(
        json.dumps(
            {
                "steps": STEPS,
                "tokens": tokens["bootlab"].pop(),
                "baseline_s": [round(s, 2) for s, _, _ in runs["baseline"]],
                "bootlab_s": [round(s, 2) for s, _, _ in runs["bootlab"]],
                "baseline_tok_s": round(statistics.median(rates["baseline"]), 1),
                "bootlab_tok_s": round(statistics.median(rates["bootlab"]), 1),
                "ratio": round(statistics.median(b / a for a, b in pairs), 3),
                "baseline_peak_rss_mib": round(max(rss["baseline"]) / 2**20, 1),
                "bootlab_peak_rss_mib": round(max(rss["bootlab"]) / 2**20, 1),
                "peak_rss_ratio": round(max(rss["bootlab"]) / max(rss["baseline"]), 3),
                "checkpoint_every": CHECKPOINT_EVERY,
                "resume_lost_steps": lost,
                "goals": {
                    "ratio": 1.0,
                    "peak_rss_ratio": 1.05,
                    "resume_lost_steps": CHECKPOINT_EVERY,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
