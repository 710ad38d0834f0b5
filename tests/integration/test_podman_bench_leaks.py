"""The benches that need podman or a registry, each in its quick mode as CI runs it: it
reports its figures (a ratio bench: ratio, spread and control) and leaves no process,
container, image or temp file behind, also when SIGTERM stops it half-way."""

from __future__ import annotations

import pytest

from tests.support.benches import leaves_nothing

pytestmark = pytest.mark.integration
HALF_WAY = [None, "SIGTERM"]


@pytest.mark.parametrize("interrupt", HALF_WAY)
def test_pull_bench(interrupt: str | None) -> None:
    result = leaves_nothing(["-m", "bench.pull"], interrupt_at=interrupt and "round 1/")
    if result is not None:
        assert result["disk_footprint_ratio"] and "resume_refetch_bytes" in result


@pytest.mark.parametrize("interrupt", HALF_WAY)
def test_daemon_bench(dev_image: str, interrupt: str | None) -> None:
    argv = ["-m", "bench.daemon", dev_image]
    result = leaves_nothing(argv, interrupt_at=interrupt and "measuring", ratio=False)
    if result is not None:
        assert {"ready_ms", "idle_rss_mb", "status_p99_ms", "cli_status_ms"} <= set(result)


@pytest.mark.parametrize("interrupt", HALF_WAY)
def test_upgrade_delta_bench(dev_image: str, interrupt: str | None) -> None:
    """The dev image built first: the quick bench's builds then come from the layer cache."""
    argv = ["-m", "bench.upgrade_delta"]
    result = leaves_nothing(argv, interrupt_at=interrupt and "building", ratio=False)
    if result is not None:
        assert 0 < result["delta_bytes"] < result["image_bytes"]  # type: ignore[operator]
