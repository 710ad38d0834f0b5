"""Training data for the tiny model, made here: conversations in InstructLab's messages
format with something to learn (a fixed table of made-up facts), for a knowledge phase and
a skills phase. Deterministic, so two runs of a job see the same samples."""

from __future__ import annotations

import json
import random
from pathlib import Path

# The tiny tokenizer was trained on words of these syllables (tests/support/tiny_model.py).
_SYLLABLES = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]


def _facts() -> dict[str, str]:
    rng = random.Random(7)  # noqa: S311 - reproducible data, not secrets
    words = ["".join(rng.choices(_SYLLABLES, k=rng.randint(1, 3))) for _ in range(120)]
    return {word: rng.choice(words) for word in words[:40]}


def conversations(kind: str, count: int, seed: int = 0) -> list[dict[str, object]]:
    facts = _facts()
    rng = random.Random(f"{kind}:{seed}")  # noqa: S311 - reproducible data
    samples: list[dict[str, object]] = []
    for _ in range(count):
        subject = rng.choice(sorted(facts))
        if kind == "knowledge":
            messages = [
                {"role": "user", "content": f"what is {subject}"},
                {"role": "assistant", "content": f"{subject} is {facts[subject]}"},
            ]
        else:
            messages = [
                {"role": "system", "content": "answer in reverse"},
                {"role": "user", "content": f"reverse {subject} {facts[subject]}"},
                {"role": "assistant", "content": f"{facts[subject]} {subject}"},
            ]
        samples.append({"messages": messages})
    return samples


def write(path: Path, kind: str, count: int, seed: int = 0) -> Path:
    path.write_text("".join(json.dumps(s) + "\n" for s in conversations(kind, count, seed)))
    return path


# The tiny model's LAB job, for `bootlab train run` (ml tier) and bootlab-train in the VM.
_PHASES = {
    "knowledge": "    - {{name: knowledge, data: knowledge, epochs: {epochs}, "
    "learning_rate: 1.0e-3,\n       effective_batch_size: 8, warmup_steps: 1}}\n",
    "skills": "    - {{name: skills, data: skills, epochs: 2, learning_rate: 5.0e-4, "
    "effective_batch_size: 8}}\n",
}


def job_yaml(
    job: str, every: int, phases: tuple[str, ...] = ("knowledge", "skills"), epochs: int = 2
) -> str:
    """A `train:` job named `job` (its result: model tiny-JOB), checkpointed every `every`
    steps, with these phases (each with its own dataset; `epochs` is the first's)."""
    listed = "".join(_PHASES[phase].format(epochs=epochs) for phase in phases)
    return (
        f"train:\n  model: tiny\n  job: {job}\n  output: tiny-{job}\n  phases:\n{listed}"
        f"  max_seq_len: 256\n  max_batch_len: 512\n  checkpoint_every: {every}\n"
        "  held_out: 0.1\n"
    )
