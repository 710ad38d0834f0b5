"""Benchmark: how long rendering the default spec takes (goal < 100 ms).

Prints one JSON object as its last stdout line: `render_ms` (median of warm in-process
load+validate+render), `render_cold_ms` (first call, templates uncompiled), and `build.py
render` as a new process (`cli_render_ms`) against `python -c pass` (`python_baseline_ms`),
interleaved by the harness: `ratio` (= `cli_vs_python_ratio`, the median of the rounds'
CLI over Python times), its `spread`, and `control` (Python against Python).

Usage: python -m bench.render [--quick]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import harness
from image import render, spec

ROOT = Path(__file__).resolve().parent.parent
GOAL_MS = 100.0
WARM, ROUNDS = 30, 6
# Process starts take 20-200 ms: a shorter wait for quiet CPUs than the harness's default.
QUIET_S = 1.0


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def once() -> float:
    started = time.perf_counter()
    render.render(spec.load())
    return _ms(started)


def measure(bench: harness.Bench) -> dict[str, object]:
    cold = once()
    warm = [once() for _ in range(5 if bench.quick else WARM)]
    commands = {
        harness.A: [sys.executable, "-c", "pass"],
        harness.B: [sys.executable, "build.py", "--quiet", "render"],
    }

    def process(side: str, _: int) -> float:
        started = time.perf_counter()
        with bench.spawn(commands[side], stdout=subprocess.DEVNULL, cwd=ROOT) as child:
            child.wait()
        if child.returncode != 0:
            sys.exit(f"{commands[side]} failed ({child.returncode})")
        return _ms(started)

    runs = bench.interleave(2 if bench.quick else ROUNDS, process, quiet_s=QUIET_S)
    render_ms = statistics.median(warm)
    found = runs.figures(digits=2)
    return {
        "render_ms": round(render_ms, 2),
        "render_cold_ms": round(cold, 2),
        "cli_render_ms": round(statistics.median(runs.values(harness.B)), 1),
        "python_baseline_ms": round(statistics.median(runs.values(harness.A)), 1),
        "cli_vs_python_ratio": found["ratio"],
        **found,
        "goal_ms": GOAL_MS,
        "goal_met": render_ms < GOAL_MS,
    }


if __name__ == "__main__":
    harness.command_line("render", __doc__, measure)
