"""Training under systemd in the booted dev image: with serving active, `systemctl start
bootlab-train` stops it and trains two phases on CPU; `systemctl status` shows the step and
loss; `systemctl kill -s KILL` mid-run restarts the unit, which resumes from its last
checkpoint; the unit ends successfully and the trained model is in the store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.infra import Booted, sh
from tests.support.tiny_model import tiny_model
from tests.support.train_data import write

pytestmark = pytest.mark.system

CONFIG = """\
serve:
  model: tiny-gguf
  port: 8766
  max_model_len: 512
train:
  model: tiny
  output: tiny-trained
  phases:
    - {name: knowledge, data: knowledge, epochs: 3, learning_rate: 1.0e-3,
       effective_batch_size: 8}
    - {name: skills, data: skills, epochs: 2, learning_rate: 5.0e-4, effective_batch_size: 8}
  max_seq_len: 256
  max_batch_len: 512
  checkpoint_every: 2
"""


def _unit(machine: Booted, *properties: str) -> dict[str, str]:
    shown = machine.exec(
        "systemctl", "show", "-p", ",".join(properties), "bootlab-train.service"
    ).stdout
    return dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)


def _training(machine: Booted) -> dict[str, object]:
    state = json.loads(machine.exec("bootlab", "train", "status", "--json").stdout)
    return state.get("training") or {}  # type: ignore[no-any-return]


def _wait(what: str, check: object, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def test_training_under_systemd_stops_serving_survives_a_kill_and_publishes(
    booted: Booted, tmp_path: Path
) -> None:
    hf, gguf = tiny_model()
    sh("podman", "cp", str(hf), f"{booted.name}:/tmp/tiny")
    sh("podman", "cp", str(gguf), f"{booted.name}:/tmp/tiny.gguf")
    booted.exec("bootlab", "model", "pull", "/tmp/tiny")
    booted.exec("bootlab", "model", "pull", "/tmp/tiny.gguf", "--name", "tiny-gguf")
    for kind in ("knowledge", "skills"):
        data = write(tmp_path / f"{kind}.jsonl", kind, 64)
        sh("podman", "cp", str(data), f"{booted.name}:/tmp/{kind}.jsonl")
        booted.exec("bootlab", "data", "import", f"/tmp/{kind}.jsonl", "--name", kind)
    booted.write("/etc/bootlab/config.yaml", CONFIG)
    # This host has cgroup v1, and podman gives the container no cgroup release agent:
    # systemd inside never hears that a killed unit's cgroup emptied, and waits out
    # TimeoutStopSec (15 min) before restarting it. Shorter here; a real host needs nothing.
    booted.write(
        "/run/systemd/system/bootlab-train.service.d/container.conf",
        "[Service]\nTimeoutStopSec=20s\n",
    )
    booted.exec("systemctl", "daemon-reload")
    try:
        booted.exec("systemctl", "start", "bootlab-serve")
        assert _unit(booted, "ActiveState")["ActiveState"] == "inactive"

        booted.exec("systemctl", "start", "bootlab-train")  # READY once the data is checked
        serving = booted.exec("systemctl", "is-active", "bootlab-serve", check=False)
        assert serving.stdout.strip() != "active"  # Conflicts= stopped it first

        def stepping() -> bool:
            progress = _training(booted).get("progress") or {}
            return isinstance(progress, dict) and int(progress.get("step", 0)) >= 5

        _wait("the first steps", stepping)

        # STATUS= says the step (or, for a moment every checkpoint_every steps, that a
        # checkpoint is being saved): wait for a step line to be the one shown.
        def shows_a_step() -> bool:
            shown = booted.exec(
                "systemctl", "status", "--no-pager", "bootlab-train", check=False
            ).stdout
            return 'Status: "phase knowledge (1/2) step' in shown and "tok/s ETA" in shown

        _wait("systemctl status to show the step", shows_a_step, 30)

        booted.exec("systemctl", "kill", "-s", "KILL", "bootlab-train")
        _wait("the restart", lambda: _unit(booted, "NRestarts")["NRestarts"] != "0", 120)

        def finished() -> bool:
            unit = _unit(booted, "ActiveState", "Result")
            return unit["ActiveState"] == "inactive" and _training(booted).get("state") == "done"

        _wait("the job to finish", finished, 900)
        assert _unit(booted, "Result")["Result"] == "success"
        journal = booted.exec("journalctl", "-u", "bootlab-train", "-o", "cat").stdout
        assert "resuming at phase" in journal, journal[-3000:]
        fields = booted.exec(
            "journalctl", "-u", "bootlab-train", "-o", "json", "BOOTLAB_PHASE=skills"
        ).stdout
        assert '"BOOTLAB_LOSS"' in fields  # structured progress, for tools
        models = json.loads(booted.exec("bootlab", "model", "list", "--json").stdout)["models"]
        trained = next(m for m in models if m["name"] == "tiny-trained")
        assert any(f["path"] == "model.safetensors" for f in trained["files"])
        assert booted.exec("bootlab", "model", "verify", "tiny-trained").returncode == 0
    finally:
        booted.exec("systemctl", "stop", "bootlab-serve", "bootlab-train", check=False)
        booted.exec("systemctl", "reset-failed", "bootlab-serve", "bootlab-train", check=False)
        booted.exec("rm", "-f", "/etc/bootlab/config.yaml")
        booted.exec("rm", "-rf", "/run/systemd/system/bootlab-train.service.d")
        booted.exec("systemctl", "daemon-reload")
