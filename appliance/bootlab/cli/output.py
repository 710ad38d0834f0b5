"""How `bootlab` prints: JSON for scripts, aligned tables, ages ("3m ago"), progress lines and
warnings. Formatting only: nothing here asks the daemon."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bootlab import text

if TYPE_CHECKING:
    from bootlab.api import Job, ServiceState
    from bootlab.workload.state import TrainingProgress


def print_json(document: Any) -> None:
    print(json.dumps(document, indent=2))


def table(rows: Sequence[Sequence[str]], header: Sequence[str] | None = None) -> None:
    everything = [list(header)] if header else []
    everything += [list(row) for row in rows]
    if not everything:
        return
    widths = [max(len(row[i]) for row in everything) for i in range(len(everything[0]))]
    for row in everything:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())


def ago(stamp: float | None) -> str:
    if not stamp:
        return "never"
    seconds = max(0, int(time.time() - stamp))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def warn(warnings: Sequence[str]) -> None:
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def service_line(state: ServiceState) -> list[str]:
    detail = f"{state.active} ({state.sub})"
    if state.main_pid:
        detail += f", pid {state.main_pid}"
    if state.active == "failed":
        detail += f", {state.result}"
    return [state.workload, detail, f"since {ago(state.since)}", state.unit]


def training_line(step: TrainingProgress, width: int = 20) -> str:
    fraction = step.step / step.steps if step.steps else 0.0
    bar = "#" * int(fraction * width)
    eta = int(step.eta_s)
    return (
        f"{step.phase} ({step.phase_index + 1}/{step.phases}) [{bar:<{width}}] "
        f"step {step.step}/{step.steps} loss {step.loss:.4f} "
        f"{step.tokens_per_s:.0f} tok/s ETA {eta // 60}m{eta % 60:02d}s"
    )


def progress_line(job: Job, width: int = 30) -> str:
    total, done = job.total, job.done
    fraction = done / total if total else 0.0
    bar = "#" * int(fraction * width)
    eta_text = f"{job.eta_s:.0f}s" if job.eta_s is not None else "-"
    if job.unit == "requests":
        return (
            f"[{bar:<{width}}] {fraction:4.0%} {done}/{total} requests "
            f"{job.rate_bytes_s:.2f}/s ETA {eta_text}"
        )
    return (
        f"[{bar:<{width}}] {fraction:4.0%} {text.size(done)}/{text.size(total)} "
        f"{text.size(job.rate_bytes_s)}/s ETA {eta_text}"
    )
