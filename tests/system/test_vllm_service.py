"""vLLM under systemd in the booted image: the tiny Hugging Face model (made on this host, as
the ML tier makes it) copied in and pulled into the store, `bootlab serve start` choosing the
vLLM backend by its files, `bootlab chat` answered through it, `bootlab serve stop`."""

from __future__ import annotations

import json
import socket

import pytest

from image.spec import DEFAULT_SPEC, load
from tests.support.infra import Booted, sh

pytestmark = pytest.mark.system

ML_PYTHON = "/usr/lib/bootlab/ml/bin/python"
# vLLM on a CPU in an image without a C++ compiler: eager (torch.compile would build C++),
# and a fixed KV cache (its default share of all memory is slow to set up).
VLLM_ARGS = ["--enforce-eager", "--kv-cache-memory-bytes", "1G", "--max-num-seqs", "4"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_ml_venv_has_vllm_and_not_what_the_spec_removes(booted: Booted) -> None:
    removed = load(DEFAULT_SPEC, "dev").ml.remove
    assert "torchvision" in removed
    # transformers: what torchvision built for another torch broke at import.
    probe = (
        "import sys, importlib.util as u, transformers; "
        "print(u.find_spec('vllm') is not None, [n for n in sys.argv[1:] if u.find_spec(n)])"
    )
    result = booted.exec(ML_PYTHON, "-c", probe, *removed)
    assert result.stdout.strip() == "True []", result.stdout


def test_vllm_serves_the_tiny_model_under_systemd(booted: Booted) -> None:
    from tests.support.tiny_model import tiny_model

    hf, _ = tiny_model()
    sh("podman", "cp", hf, f"{booted.name}:/var/tmp/tiny-hf")
    booted.exec("bootlab", "model", "pull", "/var/tmp/tiny-hf", "--name", "tiny-hf")
    port = _free_port()
    booted.write(
        "/etc/bootlab/config.yaml",
        f"serve:\n  model: tiny-hf\n  port: {port}\n  max_model_len: 512\n"
        f"  vllm_args: {json.dumps(VLLM_ARGS)}\n",
    )
    try:
        started = booted.exec("bootlab", "serve", "start", check=False)  # returns once it answers
        if started.returncode != 0:
            journal = booted.exec("journalctl", "-u", "bootlab-serve", "-n", "60", "-o", "cat")
            pytest.fail(f"serve start failed:\n{started.stderr}\n{journal.stdout}")
        state = json.loads(booted.exec("bootlab", "serve", "status", "--json").stdout)
        assert (state["model"], state["backend"]) == ("tiny-hf", "vllm")
        assert state["endpoint"] == f"http://127.0.0.1:{port}/v1"
        # The backend vLLM, as systemd runs it: the unit's main process supervises it.
        supervisor = booted.exec("systemctl", "show", "-p", "MainPID", "--value", "bootlab-serve")
        children = booted.exec("sh", "-c", f"cat /proc/{supervisor.stdout.strip()}/task/*/children")
        argv = booted.exec("cat", f"/proc/{children.stdout.split()[0]}/cmdline").stdout.split("\0")
        assert argv[:3] == [ML_PYTHON, "-m", "vllm.entrypoints.openai.api_server"]
        answer = booted.exec("bootlab", "chat", "-q", "hello", "--max-tokens", "8")
        assert answer.stdout.strip()  # a random model: words, not sense
        booted.exec("bootlab", "serve", "stop")
        stopped = booted.exec("systemctl", "is-active", "bootlab-serve", check=False)
        assert stopped.stdout.strip() == "inactive"
        refused = booted.exec("bootlab", "chat", "-q", "hello", check=False)
        assert refused.returncode != 0 and "Traceback" not in refused.stderr
    finally:
        booted.exec("systemctl", "stop", "bootlab-serve", check=False)
        booted.exec("systemctl", "reset-failed", "bootlab-serve", check=False)
        booted.exec("rm", "-rf", "/etc/bootlab/config.yaml", "/var/tmp/tiny-hf")
        booted.exec("bootlab", "model", "remove", "tiny-hf", check=False)
