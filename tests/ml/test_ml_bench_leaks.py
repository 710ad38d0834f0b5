"""The benches that run vLLM or training, each with its smallest settings: it reports its
ratio with its spread and control, and leaves no process or temp file behind, also when
SIGTERM stops it half-way (servers up, or a training run going)."""

from __future__ import annotations

import pytest

from tests.support.benches import leaves_nothing

pytestmark = pytest.mark.ml
HALF_WAY = [None, "SIGTERM"]


@pytest.mark.parametrize("interrupt", HALF_WAY)
def test_serve_bench(interrupt: str | None) -> None:
    result = leaves_nothing(["-m", "bench.serve"], interrupt_at=interrupt and "round 1/")
    if result is not None:
        assert result["launch_differences"] == []
        assert result["ready_control"] and result["ready_spread"]


@pytest.mark.parametrize("interrupt", HALF_WAY)
def test_train_bench(interrupt: str | None) -> None:
    result = leaves_nothing(["-m", "bench.train"], interrupt_at=interrupt and "round 1/")
    if result is not None:
        assert result["resume_lost_steps"] <= result["checkpoint_every"]  # type: ignore[operator]


@pytest.mark.parametrize("interrupt", HALF_WAY)
def test_sdg_bench(interrupt: str | None) -> None:
    leaves_nothing(["-m", "bench.sdg"], interrupt_at=interrupt and "round 1/")
