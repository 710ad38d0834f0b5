"""Which samples make each step and how they are packed: from the seed, the phase and the
epoch alone, so that a resumed job sees exactly the batches an uninterrupted one would."""

from __future__ import annotations

import random
from collections.abc import Iterable

from bootlab.train.tokens import Sample


def split(count: int, held_out: float, seed: int, phase: int) -> tuple[list[int], list[int]]:
    """Training and held-out sample indices; at least one of each when there are two."""
    order = list(range(count))
    random.Random(f"split:{seed}:{phase}").shuffle(order)  # noqa: S311 - reproducible, not secret
    kept = min(max(round(count * held_out), 1 if held_out > 0 and count >= 2 else 0), count - 1)
    return sorted(order[kept:]), sorted(order[:kept])


def epoch_order(train: list[int], seed: int, phase: int, epoch: int) -> list[int]:
    order = list(train)
    random.Random(f"order:{seed}:{phase}:{epoch}").shuffle(order)  # noqa: S311 - reproducible
    return order


def micro_batches(samples: Iterable[Sample], budget: int) -> list[list[Sample]]:
    batches: list[list[Sample]] = []
    used = budget  # forces a new batch for the first sample
    for sample in samples:
        if used + len(sample.input_ids) > budget:
            batches.append([])
            used = 0
        batches[-1].append(sample)
        used += len(sample.input_ids)
    return batches
