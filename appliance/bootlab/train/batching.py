"""Which samples make each step and how they are packed: from the seed, the phase and the
epoch alone, so that a resumed job sees exactly the batches an uninterrupted one would."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

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


ROW_ALIGN = 64  # row widths are multiples of this: fewer distinct shapes, little padding


@dataclass(frozen=True)
class MicroBatch:
    """Rows of equal width, each holding one or more whole samples back to back."""

    rows: list[list[Sample]]
    width: int


def micro_batches(samples: Sequence[Sample], budget: int) -> list[MicroBatch]:
    """A step's samples packed into rows (first fit, longest first), rows grouped so that
    a micro-batch holds at most `budget` tokens, padding included.

    Rows are as wide as the longest sample, rounded up to ROW_ALIGN, not one row of the
    whole budget: attention costs the square of the row's width, and the short rows keep it
    near what the samples alone need, while packing keeps the padding low."""
    if not samples:
        return []
    longest = max(len(sample.input_ids) for sample in samples)
    width = min(budget, -(-longest // ROW_ALIGN) * ROW_ALIGN)
    rows: list[list[Sample]] = []
    room: list[int] = []
    for sample in sorted(samples, key=lambda s: -len(s.input_ids)):  # stable: deterministic
        size = len(sample.input_ids)
        for index, left in enumerate(room):
            if size <= left:
                rows[index].append(sample)
                room[index] -= size
                break
        else:
            rows.append([sample])
            room.append(width - size)
    per_batch = max(1, budget // width)
    return [
        MicroBatch(rows[start : start + per_batch], width)
        for start in range(0, len(rows), per_batch)
    ]
