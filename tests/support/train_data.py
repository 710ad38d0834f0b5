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
