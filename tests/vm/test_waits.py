"""`bootlab serve|train start|stop` wait as long as the unit allows, on a real host: a backend
that loads for more than two minutes (past the 120 s the API once allowed) is waited for
with its STATUS= progress, `--no-wait` returns at once, and a training stop whose checkpoint
takes more than two minutes to write (the disk throttled by systemd's own
IOWriteBandwidthMax=) outlives a 60 s TimeoutStopSec= because the supervisor extends it
while the checkpoint still grows. Only a VM has the block device and io controller that
the throttle needs (the container tier runs on cgroup v1 here).

The slow backend is a stand-in for llama.cpp's server, reached through a drop-in's
PYTHONPATH (`-m llama_cpp.server` finds it first): no test-only code in bootlab itself."""

from __future__ import annotations

import base64
import io
import json
import re
import tarfile
import time
from pathlib import Path

import pytest

from tests.support.tiny_model import tiny_model
from tests.support.train_data import write
from tests.support.vm import Guest

pytestmark = pytest.mark.vm

LOAD_S = 130  # past the old 120 s client timeout

# llama_cpp.server's command line, answered the way it answers once loaded: /v1/models lists
# the alias. It "loads" for $SLOW_LOAD_S seconds first.
SLOW_SERVER = """\
import http.server, json, os, sys, time
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
time.sleep(float(os.environ["SLOW_LOAD_S"]))
class Models(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"data": [{"id": args["--model_alias"]}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *_):
        pass
http.server.HTTPServer((args["--host"], int(args["--port"])), Models).serve_forever()
"""

SHADOW = "/var/lib/bootlab-slow-backend"
STAGE = "/root/waits"  # not /tmp: bootlabd has a /tmp of its own (PrivateTmp=)
SERVE_DROP_IN = "/run/systemd/system/bootlab-serve.service.d/slow-backend.conf"
TRAIN_DROP_IN = "/run/systemd/system/bootlab-train.service.d/short-stop.conf"

CONFIG = """\
serve:
  port: 8767
train:
  model: tiny
  output: tiny-waited
  phases:
    - {name: knowledge, data: knowledge, epochs: 50, learning_rate: 1.0e-3,
       effective_batch_size: 8}
  max_seq_len: 256
  max_batch_len: 512
  checkpoint_every: 100000
"""


def _put(guest: Guest, source: Path, target: str) -> None:
    """A file or directory into the guest, as a tar stream over SSH."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.add(source, arcname=source.name)
    guest.ssh(
        f"mkdir -p {target} && base64 -d | tar xz -C {target}",
        input_text=base64.b64encode(archive.getvalue()).decode(),
    )


def _timed(guest: Guest, command: str) -> tuple[float, str, str]:
    began = time.monotonic()
    result = guest.ssh(command)
    return time.monotonic() - began, result.stdout, result.stderr


def _unit(guest: Guest, unit: str, *properties: str) -> dict[str, str]:
    shown = guest.ssh(f"systemctl show -p {','.join(properties)} {unit}").stdout
    return dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def models(guest: Guest) -> None:
    hf, gguf = tiny_model()
    _put(guest, hf, STAGE)
    _put(guest, gguf, STAGE)
    guest.ssh(f"bootlab model pull {STAGE}/hf --name tiny")
    guest.ssh(f"bootlab model pull {STAGE}/tiny.gguf --name tiny-gguf")
    guest.ssh("cat > /etc/bootlab/config.yaml", input_text=CONFIG)


def test_serve_start_waits_for_a_load_past_two_minutes(guest: Guest, models: None) -> None:
    guest.ssh(
        f"mkdir -p {SHADOW}/llama_cpp/server && touch {SHADOW}/llama_cpp/__init__.py "
        f"{SHADOW}/llama_cpp/server/__init__.py && cat > {SHADOW}/llama_cpp/server/__main__.py",
        input_text=SLOW_SERVER,
    )
    guest.ssh(
        f"mkdir -p {Path(SERVE_DROP_IN).parent} && cat > {SERVE_DROP_IN} && "
        "systemctl daemon-reload",
        input_text=f"[Service]\nEnvironment=PYTHONPATH={SHADOW} SLOW_LOAD_S={LOAD_S}\n",
    )
    try:
        took, out, _ = _timed(guest, "bootlab serve start tiny-gguf --no-wait --json")
        queued = json.loads(out)
        assert took < 30, f"--no-wait took {took:.0f}s"
        assert queued["job"] and queued["active"] in ("inactive", "activating"), queued
        took, out, err = _timed(guest, "bootlab serve stop")  # cancels the load
        assert "inactive" in out, out

        took, out, err = _timed(guest, "bootlab serve start tiny-gguf")
        assert took >= LOAD_S, f"returned after {took:.0f}s, before the model answered"
        assert "active (running)" in out, out
        loading = re.findall(r"loading tiny-gguf with llama-cpp, (\d+) s", err)
        assert loading and max(int(s) for s in loading) >= 100, err[-3000:]
        assert err.startswith("bootlab-serve.service: "), err[-3000:]  # plain lines, no TTY
        assert _unit(guest, "bootlab-serve", "ActiveState")["ActiveState"] == "active"
    finally:
        guest.ssh("bootlab serve stop --no-wait", check=False)
        guest.ssh(f"rm -f {SERVE_DROP_IN} && systemctl daemon-reload", check=False)


def test_train_stop_waits_for_a_checkpoint_past_two_minutes(
    guest: Guest, models: None, tmp_path: Path
) -> None:
    controllers = guest.ssh("cat /sys/fs/cgroup/cgroup.controllers").stdout
    assert "io" in controllers.split(), f"no io controller in the guest: {controllers}"
    data = write(tmp_path / "knowledge.jsonl", "knowledge", 256)
    guest.ssh(f"cat > {STAGE}/knowledge.jsonl", input_text=data.read_text())
    guest.ssh(f"bootlab data import {STAGE}/knowledge.jsonl --name knowledge")
    # Shorter than the throttled checkpoint takes: only the supervisor's extensions let
    # the stop finish well.
    guest.ssh(
        f"mkdir -p {Path(TRAIN_DROP_IN).parent} && cat > {TRAIN_DROP_IN} && "
        "systemctl daemon-reload",
        input_text="[Service]\nTimeoutStopSec=60s\n",
    )
    try:
        _, out, err = _timed(guest, "bootlab train start")  # until the data is checked
        assert "active" in out, out + err[-2000:]
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            training = json.loads(guest.ssh("bootlab train status --json").stdout)["training"]
            if ((training or {}).get("progress") or {}).get("step", 0) >= 2:
                break
            time.sleep(5)
        else:
            pytest.fail(f"training made no steps: {training}")
        # About 20 MB of weights and optimizer state at 128 KB/s: some 150 s to write.
        guest.ssh(
            "systemctl set-property --runtime bootlab-train.service "
            "'IOWriteBandwidthMax=/var/lib/bootlab 128K'"
        )
        took, out, err = _timed(guest, "bootlab train stop")
        assert took > 120, f"the stop took only {took:.0f}s: was the disk throttled?\n{err}"
        assert "stopping: saving a checkpoint at step" in err, err[-3000:]
        assert "inactive" in out, out
        unit = _unit(guest, "bootlab-train", "ActiveState", "Result")
        assert unit == {"ActiveState": "inactive", "Result": "success"}, unit  # not "timeout"
        training = json.loads(guest.ssh("bootlab train status --json").stdout)["training"]
        assert training["state"] == "stopped", training
        resume = guest.ssh("ls /var/lib/bootlab/checkpoints/tiny-waited/resume").stdout.split()
        assert resume, "no checkpoint was saved"
    finally:
        guest.ssh("bootlab train stop", check=False)
        guest.ssh(
            f"rm -f {TRAIN_DROP_IN} && systemctl daemon-reload && "
            "systemctl set-property --runtime bootlab-train.service IOWriteBandwidthMax=",
            check=False,
        )
