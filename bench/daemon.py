"""Benchmark: the appliance daemon in the booted dev image, with systemd socket activation.

Prints one JSON object as its last stdout line:
- `ready_ms`: socket activation to first answer (daemon stopped, socket listening; median
  of 5 first requests, each starting bootlabd), goal < 300;
- `idle_rss_mb`: bootlabd's resident memory after serving requests, goal < 60;
- `status_p99_ms`: p99 of 300 `GET /v1/status` through the socket, goal < 10;
- `cli_status_ms`: `bootlab status` as a new process (median of 10), goal < 250;
- `python_baseline_ms`: `python3 -c pass` in the same container (median of 10), the floor
  the CLI numbers compare against on this noisy machine;
- `ratio`, `spread`, `control`: `bootlab status` (a new process, as an admin runs it) of this
  tree over the same command of the appliance as it was before the issue-15 refactor
  (BASELINE, its `appliance/bootlab` from git, laid over the image's with PYTHONPATH for the
  daemon and the CLI alike), interleaved round by round in the same container;
  `vs_baseline` has that ratio for each figure above (≤ 1: no worse than before).
`--quick` takes 2, 50 and 3 samples and 2 rounds instead.

Usage: python -m bench.daemon [--quick] [IMAGE]   (default: the dev image the tests build)
"""

from __future__ import annotations

import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import harness
from bench.harness import A

ROOT = Path(__file__).resolve().parent.parent
GOALS = {"ready_ms": 300, "idle_rss_mb": 60, "status_p99_ms": 10, "cli_status_ms": 250}
SAMPLES = {"ready": 5, "warm": 30, "status": 300, "process": 10}
QUICK = {"ready": 2, "warm": 5, "status": 50, "process": 3}
ROUNDS, QUICK_ROUNDS = 5, 2
# The last commit before the refactor of issue 15 (cli/ and workload/ packages, one exit-code
# table): the daemon figures must be no worse than this tree's.
BASELINE = "d09056e"
BASELINE_DIR = "/opt/bootlab-baseline"
DROP_IN = "/run/systemd/system/bootlabd.service.d/50-bench-baseline.conf"
FIGURES = ("ready_ms", "idle_rss_mb", "status_p99_ms", "status_p50_ms", "cli_status_ms")

# Runs inside the booted image, with the appliance's own Python.
MEASURE = """
import json, statistics, subprocess, sys, time
from pathlib import Path
from bootlab import client

SOCKET = Path("/run/bootlab/bootlab.sock")
SAMPLES = json.loads(sys.argv[1])

def status():
    client.call(SOCKET, "GET", "/v1/status")

def ms(started):
    return (time.perf_counter() - started) * 1000

def median_process(argv):
    samples = []
    for _ in range(SAMPLES["process"]):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        samples.append(ms(started))
    return statistics.median(samples)

ready = []
for _ in range(SAMPLES["ready"]):
    subprocess.run(["systemctl", "stop", "bootlabd.service"], check=True)
    started = time.perf_counter()
    status()
    ready.append(ms(started))
for _ in range(SAMPLES["warm"]):
    status()
latencies = []
for _ in range(SAMPLES["status"]):
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


def measure(bench: harness.Bench, image: str) -> dict[str, object]:
    name = bench.container("boot")  # removed by the harness, however the bench ends

    def podman(*argv: str, stdin: str | None = None) -> str:
        return bench.call(["podman", *argv], input_text=stdin)

    podman("run", "-d", "--name", name, "--systemd=always", image, "/sbin/init")
    deadline = time.monotonic() + 120
    while "running" not in podman("exec", name, "sh", "-c", "systemctl is-system-running || true"):
        if time.monotonic() > deadline:
            sys.exit("the image did not boot within 120 s")
        time.sleep(0.5)
    bench.note("booted; measuring inside the container")
    unpack = f"mkdir -p {BASELINE_DIR} && tar -x -C {BASELINE_DIR}"
    bench.call(
        [
            "sh",
            "-c",
            f"git -C {ROOT} archive {BASELINE} appliance/bootlab"
            f" | podman exec -i {name} sh -c {shlex.quote(unpack)}",
        ]
    )
    samples = json.dumps(QUICK if bench.quick else SAMPLES)
    python = "/usr/lib/bootlab/venv/bin/python"
    found: dict[str, list[dict[str, Any]]] = {}

    def once(side: str, _: int) -> float:
        """One round of every figure, by the baseline appliance (A) or this tree's (B)."""
        baseline = side == A
        setup = (
            f"mkdir -p {Path(DROP_IN).parent} && printf '[Service]\\nEnvironment="
            f"PYTHONPATH={BASELINE_DIR}/appliance\\n' > {DROP_IN}"
            if baseline
            else f"rm -f {DROP_IN}"
        )
        podman("exec", name, "sh", "-c", f"{setup} && systemctl daemon-reload")
        env = ["--env", f"PYTHONPATH={BASELINE_DIR}/appliance"] if baseline else []
        said = podman("exec", "-i", *env, name, python, "-", samples, stdin=MEASURE)
        figures: dict[str, Any] = json.loads(said.strip().splitlines()[-1])
        found.setdefault(side, []).append(figures)
        return float(figures["cli_status_ms"])

    rounds = QUICK_ROUNDS if bench.quick else ROUNDS
    interleaved = bench.interleave(rounds, once, quiet_s=5)
    ours, before = found[harness.B], found[A]
    result = {
        key: statistics.median(r[key] for r in ours) for key in (*FIGURES, "python_baseline_ms")
    }
    result["vs_baseline"] = {
        key: round(result[key] / statistics.median(r[key] for r in before), 3) for key in FIGURES
    }
    result["baseline"] = BASELINE
    result.update(interleaved.figures())
    result["goals"] = GOALS
    result["met"] = all(result[key] < goal for key, goal in GOALS.items())
    return result


def main() -> None:
    parser = harness.parser(__doc__)
    parser.add_argument("image", nargs="?", default="localhost/bootlab-test:dev")
    args = parser.parse_args()
    harness.main("daemon", lambda bench: measure(bench, args.image), quick=args.quick)


if __name__ == "__main__":
    main()
