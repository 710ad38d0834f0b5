"""Benchmark: how long rendering the default spec takes (goal < 100 ms).

Prints one JSON object as its last stdout line: `render_ms` (median of warm in-process
load+validate+render), `render_cold_ms` (first call, templates uncompiled), `cli_render_ms`
(`build.py render` as a new process) against `python_baseline_ms` (`python -c pass`).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "appliance")]

from image import render, spec  # noqa: E402

GOAL_MS = 100.0


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def once() -> float:
    started = time.perf_counter()
    render.render(spec.load())
    return _ms(started)


def process(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return _ms(started)


def main() -> None:
    cold = once()
    warm = [once() for _ in range(30)]
    cli = statistics.median(
        process([sys.executable, "build.py", "--quiet", "render"]) for _ in range(5)
    )
    baseline = statistics.median(process([sys.executable, "-c", "pass"]) for _ in range(5))
    render_ms = statistics.median(warm)
    print(
        json.dumps(
            {
                "render_ms": round(render_ms, 2),
                "render_cold_ms": round(cold, 2),
                "cli_render_ms": round(cli, 1),
                "python_baseline_ms": round(baseline, 1),
                "cli_vs_python_ratio": round(cli / baseline, 2),
                "goal_ms": GOAL_MS,
                "goal_met": render_ms < GOAL_MS,
            }
        )
    )


if __name__ == "__main__":
    main()
