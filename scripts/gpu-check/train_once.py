"""One `bootlab train run` (the unit's entrypoint) of the tiny model, two phases of 512
samples, on whatever this machine has: prints its exit, its log lines that say where it
ran, its progress and peak GPU memory, the STATUS lines it sent systemd, and the files of
the model it published."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bootlab import datasets
from bootlab.store.layout import model_store

from tests.support.tiny_model import appliance_with_tiny_model
from tests.support.train_data import write

ROOT = Path(__file__).resolve().parents[2]  # scripts/gpu-check/ -> the checkout

JOB = """\
train:
  model: tiny
  job: gpu
  output: tiny-gpu
  phases:
    - {name: knowledge, data: knowledge, epochs: 2, learning_rate: 1.0e-3,
       effective_batch_size: 16, warmup_steps: 2}
    - {name: skills, data: skills, epochs: 2, learning_rate: 5.0e-4, effective_batch_size: 16}
  max_seq_len: 256
  max_batch_len: 2048
  checkpoint_every: 8
  held_out: 0.1
"""


def listen(receiver: socket.socket, messages: list[str]) -> None:
    while True:
        try:
            messages.append(receiver.recv(4096).decode())
        except OSError:
            return


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        paths = appliance_with_tiny_model(root / "root")
        for kind in ("knowledge", "skills"):
            datasets.import_file(paths.state, write(root / f"{kind}.jsonl", kind, 512), kind)
        paths.config_file.parent.mkdir(parents=True, exist_ok=True)
        paths.config_file.write_text(JOB)
        notify = root / "notify"
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(str(notify))
        messages: list[str] = []
        threading.Thread(target=listen, args=(receiver, messages), daemon=True).start()
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "bootlab.cli", "train", "run"],
            env={
                **os.environ,
                "BOOTLAB_ROOT": str(paths.root),
                "NOTIFY_SOCKET": str(notify),
                "PYTHONPATH": str(ROOT / "appliance"),
            },
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
        )
        print(f"exit {result.returncode} after {time.perf_counter() - started:.1f}s")
        for line in result.stderr.splitlines():
            if any(word in line for word in ("data checked", "held_out_loss", "tok/s", "error")):
                print(line)
        statuses = [m for m in messages if "STATUS=" in m]
        print("notified:", *statuses[:2], "...", *statuses[-2:], sep="\n  ")
        output = model_store(paths).models / "tiny-gpu"
        files = sorted(p.name for p in output.iterdir()) if output.exists() else "missing"
        print("published:", files)
        if result.returncode:
            print(result.stderr[-3000:])


if __name__ == "__main__":
    main()
