"""Benchmark: the appliance daemon in the booted dev image, with systemd socket activation.

Prints one JSON object as its last stdout line:
- `ready_ms`: socket activation to first answer (daemon stopped, socket listening; median
  of 5 first requests, each starting bootlabd), goal < 300;
- `idle_rss_mb`: bootlabd's resident memory after serving requests, goal < 60;
- `status_p99_ms`: p99 of 300 `GET /v1/status` through the socket, goal < 10;
- `cli_status_ms`: `bootlab status` as a new process (median of 10), goal < 250;
- `python_baseline_ms`: `python3 -c pass` in the same container (median of 10), the floor
  the CLI numbers compare against on this noisy machine.

Usage: python bench/daemon.py [IMAGE]   (default: the dev image the tests build)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = sys.argv[1] if len(sys.argv) > 1 else "localhost/bootlab-test:dev"
GOALS = {"ready_ms": 300, "idle_rss_mb": 60, "status_p99_ms": 10, "cli_status_ms": 250}

# Runs inside the booted image, with the appliance's own Python.
MEASURE = """
import json, statistics, subprocess, time
from pathlib import Path
from bootlab import client

SOCKET = Path("/run/bootlab/bootlab.sock")

def status():
    client.call(SOCKET, "GET", "/v1/status")

def ms(started):
    return (time.perf_counter() - started) * 1000

def median_process(argv, runs=10):
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        samples.append(ms(started))
    return statistics.median(samples)

ready = []
for _ in range(5):
    subprocess.run(["systemctl", "stop", "bootlabd.service"], check=True)
    started = time.perf_counter()
    status()
    ready.append(ms(started))
for _ in range(30):
    status()
latencies = []
for _ in range(300):
    started = time.perf_counter()
    status()
    latencies.append(ms(started))
latencies.sort()
pid = subprocess.run(["systemctl", "show", "-p", "MainPID", "--value", "bootlabd"],
                     capture_output=True, text=True, check=True).stdout.strip()
rss_kb = next(int(line.split()[1]) for line in open(f"/proc/{pid}/status")
              if line.startswith("VmRSS:"))
print(json.dumps({
    "ready_ms": round(statistics.median(ready), 1),
    "idle_rss_mb": round(rss_kb / 1024, 1),
    "status_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
    "status_p50_ms": round(latencies[len(latencies) // 2], 2),
    "cli_status_ms": round(median_process(["bootlab", "status"]), 1),
    "python_baseline_ms": round(median_process(["python3", "-c", "pass"]), 1),
}))
"""


def podman(*argv: str, stdin: str | None = None) -> str:
    env = {**os.environ}
    env.setdefault("CONTAINERS_CONF", str(ROOT / ".ci" / "containers.conf"))  # runc, ulimits
    result = subprocess.run(
        ["podman", *argv], input=stdin, capture_output=True, text=True, env=env, check=False
    )
    if result.returncode != 0:
        sys.exit(f"podman {' '.join(argv[:2])} failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


def main() -> None:
    name = f"bootlab-bench-{os.getpid()}"
    podman("run", "-d", "--name", name, "--systemd=always", IMAGE, "/sbin/init")
    try:
        deadline = time.monotonic() + 120
        while "running" not in podman(
            "exec", name, "sh", "-c", "systemctl is-system-running || true"
        ):
            if time.monotonic() > deadline:
                sys.exit("the image did not boot within 120 s")
            time.sleep(0.5)
        result = json.loads(
            podman("exec", "-i", name, "/usr/lib/bootlab/venv/bin/python", "-", stdin=MEASURE)
            .strip()
            .splitlines()[-1]
        )
    finally:
        podman("rm", "-f", "-t", "3", name)
    result["goals"] = GOALS
    result["met"] = all(result[key] < goal for key, goal in GOALS.items())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
