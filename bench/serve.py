"""Benchmark: bootlab-serve's cost over a bare vLLM server, on the tiny model, on CPU.

In one run: start `python -m vllm.entrypoints.openai.api_server` by hand and time it to its
first answer on /v1/models; do the same through `bootlab serve run` (the unit's entrypoint:
preflight, GPU lock, supervisor) until it says READY; then send the same request load to
each (48 chat completions of 64 tokens, 4 at a time, after one warm-up pass) and count
completion tokens a second.
One untimed start first warms vLLM's compile caches; then the order alternates per round;
times are medians of 5 rounds, ratios the median of each round's pair.

Prints one JSON object as its last stdout line: bare_ready_s, bootlab_ready_s, ready_ratio
(goal <= 1.05), bare_tok_s, bootlab_tok_s, throughput_ratio (goal >= 0.98).
"""

from __future__ import annotations

import concurrent.futures
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

from bootlab.paths import Paths  # noqa: E402
from bootlab.store.fetch import Progress  # noqa: E402
from bootlab.store.layout import model_store  # noqa: E402
from bootlab.store.sources import local  # noqa: E402
from tiny_model import ML_VENV, tiny_model  # noqa: E402

ROUNDS = 5
REQUESTS, CONCURRENCY, TOKENS = 48, 4, 64
VLLM_ARGS = ["--max-model-len", "512", "--gpu-memory-utilization", "0.3", "--max-num-seqs", "4"]
ENV = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONPATH": str(ROOT / "appliance")}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(port: int, model: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as reply:
            return any(m["id"] == model for m in json.loads(reply.read())["data"])
    except OSError:
        return False


def wait_ready(process: subprocess.Popen[bytes], port: int, model: str, started: float) -> float:
    while not answers(port, model):
        if process.poll() is not None:
            sys.exit(f"the server exited ({process.returncode}) before answering")
        time.sleep(0.05)
    return time.perf_counter() - started


def load(port: int, model: str) -> float:
    """Completion tokens a second under the same concurrent load."""
    body = json.dumps(
        {
            "model": model,
            "max_tokens": TOKENS,
            "ignore_eos": True,
            "messages": [{"role": "user", "content": "tell me a story"}],
        }
    ).encode()

    def one(_: int) -> int:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=300) as reply:  # noqa: S310 - loopback
            return int(json.loads(reply.read())["usage"]["completion_tokens"])

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        tokens = sum(pool.map(one, range(REQUESTS)))
    return tokens / (time.perf_counter() - started)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(90)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def bare(hf: Path) -> tuple[float, float]:
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
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
            *VLLM_ARGS,
        ],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ready = wait_ready(process, port, "tiny", started)
        load(port, "tiny")  # warm-up: first requests pay for caches either way
        return ready, load(port, "tiny")
    finally:
        stop(process)


def bootlab(paths: Paths) -> tuple[float, float]:
    port = free_port()
    paths.config_file.write_text(
        f"serve:\n  model: tiny\n  port: {port}\n  max_model_len: 512\n"
        f"  vllm_args: {json.dumps(VLLM_ARGS[2:])}\n"
    )
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "bootlab.cli", "serve", "run"],
        env={**ENV, "BOOTLAB_ROOT": str(paths.root)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ready = wait_ready(process, port, "tiny", started)
        load(port, "tiny")
        return ready, load(port, "tiny")
    finally:
        stop(process)


def main() -> None:
    hf, _ = tiny_model()
    with tempfile.TemporaryDirectory(prefix="bootlab-serve-") as scratch:
        paths = Paths(Path(scratch))
        paths.ml_venv.parent.mkdir(parents=True)
        paths.ml_venv.symlink_to(ML_VENV, target_is_directory=True)
        paths.config_file.parent.mkdir(parents=True)
        local.pull(str(hf), "tiny", model_store(paths), progress=Progress())
        bare(hf)  # untimed: vLLM's compile caches are then warm for both sides alike
        results: dict[str, list[tuple[float, float]]] = {"bare": [], "bootlab": []}
        for index in range(ROUNDS):
            order = ("bare", "bootlab") if index % 2 == 0 else ("bootlab", "bare")
            for which in order:
                results[which].append(bare(hf) if which == "bare" else bootlab(paths))
    bare_ready = statistics.median(r for r, _ in results["bare"])
    bootlab_ready = statistics.median(r for r, _ in results["bootlab"])
    bare_tok = statistics.median(t for _, t in results["bare"])
    bootlab_tok = statistics.median(t for _, t in results["bootlab"])
    # A round's two servers run back to back: their ratio cancels the machine's drift,
    # which a ratio of medians would keep.
    pairs = list(zip(results["bare"], results["bootlab"], strict=True))
    ready_ratio = statistics.median(b[0] / a[0] for a, b in pairs)
    throughput_ratio = statistics.median(b[1] / a[1] for a, b in pairs)
    print(
        json.dumps(
            {
                "bare_ready_s": round(bare_ready, 2),
                "bootlab_ready_s": round(bootlab_ready, 2),
                "ready_ratio": round(ready_ratio, 3),
                "bare_tok_s": round(bare_tok, 1),
                "bootlab_tok_s": round(bootlab_tok, 1),
                "throughput_ratio": round(throughput_ratio, 3),
                "goals": {"ready_ratio": 1.05, "throughput_ratio": 0.98},
            }
        )
    )


if __name__ == "__main__":
    main()
