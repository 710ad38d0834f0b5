"""Benchmark: pulling a ~1 GiB model from the loopback registry, bootlab against skopeo.

In one run: make a model (four random safetensors files and a config), push it as an OCI
artifact to a local docker-registry with htpasswd auth, then (after one untimed round of
both) alternately time `skopeo copy` to an `oci:` directory and `bootlab model pull`
(CLI → bootlabd), five times each with `sync` between; then kill bootlabd at half of a
pull, start it again, pull again and count what came twice.

Prints one JSON object as its last stdout line: skopeo_mb_s and bootlab_mb_s (medians);
ratio, the median of each round's skopeo time over its bootlab time (goal >= 1.2);
resume_refetch_bytes (goal <= 64 MiB); disk_footprint_ratio, store bytes on disk over model
bytes (goal 1.0).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "appliance")]

from appliance_daemon import Daemon, running_daemon  # noqa: E402
from bootlab import auth, client  # noqa: E402
from bootlab.paths import Paths  # noqa: E402
from bootlab.store.fetch import Progress  # noqa: E402
from bootlab.store.layout import model_store  # noqa: E402
from bootlab.store.sources import local  # noqa: E402
from bootlab.store.sources import registry as registry_source  # noqa: E402
from infra import Registry, _registry  # noqa: E402

MiB = 1 << 20
SHARDS = 4
SHARD_BYTES = 256 * MiB
RUNS = 5


def write_safetensors(path: Path, size: int) -> None:
    """A valid safetensors file: a header naming one uint8 tensor, then random bytes."""
    header = json.dumps({"weight": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}})
    encoded = header.encode().ljust(-(-len(header) // 8) * 8)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)) + encoded)
        for _ in range(size // (16 * MiB)):
            handle.write(os.urandom(16 * MiB))


def make_model(directory: Path) -> None:
    directory.mkdir()
    for index in range(SHARDS):
        write_safetensors(
            directory / f"model-{index + 1:05d}-of-{SHARDS:05d}.safetensors", SHARD_BYTES
        )
    (directory / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))


def bootlab(daemon: Daemon, *args: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-m", "bootlab.cli", *args, "--json"],
        env={**daemon.env(), "PYTHONPATH": str(ROOT / "appliance")},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(f"bootlab {' '.join(args)} failed: {result.stderr.strip()}")
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    os.environ.setdefault("CONTAINERS_CONF", str(ROOT / ".ci" / "containers.conf"))
    with tempfile.TemporaryDirectory(prefix="bootlab-pull-", dir="/var/tmp") as scratch:
        work = Path(scratch)
        (work / "registry").mkdir()
        with _registry(work / "registry", tls=False) as registry, running_daemon() as daemon:
            print(json.dumps(measure(work, registry, daemon)))


def measure(work: Path, registry: Registry, daemon: Daemon) -> dict[str, object]:
    credentials = auth.Credentials(registry.username, registry.password)
    # The model, pushed once with bootlab's own push (an OCI artifact, one layer a file).
    builder = Paths(work / "builder")
    auth.store(builder, registry.host, credentials)
    make_model(work / "model")
    local.pull(str(work / "model"), "bench", model_store(builder), progress=Progress())
    reference = f"docker://{registry.host}/bench/model:1"
    registry_source.push(
        "bench", reference, model_store(builder), builder, tls_verify=False, progress=Progress()
    )
    size = model_store(builder).record("bench").size
    shutil.rmtree(work / "model")
    shutil.rmtree(builder.root)

    appliance = Paths(daemon.root)
    auth.store(appliance, registry.host, credentials)  # what `bootlab login` writes
    skopeo_s, bootlab_s = [], []
    # Round 0 is untimed: both tools, and bootlabd's first pull, start warm like the rest.
    for run in range(-1, RUNS):  # alternated: this machine's speed drifts within a run
        target = work / f"oci-{run}"
        skopeo_s.append(
            timed(
                [
                    "skopeo",
                    "copy",
                    "--quiet",
                    "--src-tls-verify=false",
                    f"--src-creds={registry.username}:{registry.password}",
                    reference,
                    f"oci:{target}:m",
                ]
            )
        )
        shutil.rmtree(target)
        os.sync()
        started = time.perf_counter()
        bootlab(daemon, "model", "pull", "--tls-verify=false", "--name", "bench", reference)
        bootlab_s.append(time.perf_counter() - started)
        if run < 0:
            skopeo_s.clear()
            bootlab_s.clear()
        if run < RUNS - 1:
            bootlab(daemon, "model", "remove", "bench")
            bootlab(daemon, "model", "gc")
    footprint = model_store(appliance).footprint() / size
    refetched = resume_after_kill(daemon, reference, size)
    skopeo_rate = size / statistics.median(skopeo_s) / 1e6
    bootlab_rate = size / statistics.median(bootlab_s) / 1e6
    # Each round's two runs are next to each other in time: their ratio cancels the drift
    # of this machine's speed that a ratio of medians would keep.
    ratio = statistics.median(s / b for s, b in zip(skopeo_s, bootlab_s, strict=True))
    return {
        "model_bytes": size,
        "skopeo_mb_s": round(skopeo_rate, 1),
        "bootlab_mb_s": round(bootlab_rate, 1),
        "ratio": round(ratio, 3),
        "resume_refetch_bytes": refetched,
        "disk_footprint_ratio": round(footprint, 4),
        "goals": {"ratio": 1.2, "resume_refetch_bytes": 64 * MiB, "disk_footprint_ratio": 1.0},
    }


def resume_after_kill(daemon: Daemon, reference: str, size: int) -> int:
    """kill -9 bootlabd half-way through a pull, start it again, pull again. Returns the
    bytes that crossed the network twice: fetched before the kill (as the job last said,
    a moment before the kill) plus fetched after, minus the model's size."""
    bootlab(daemon, "model", "remove", "bench")
    bootlab(daemon, "model", "gc")
    body = {"reference": reference, "name": "bench", "tls_verify": False}
    job = client.call(daemon.socket, "POST", "/v1/models/pull", body)
    before = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = client.call(daemon.socket, "GET", f"/v1/jobs/{job['id']}")
        before = int(state["fetched"])
        if state["done"] >= size // 2 or state["state"] != "running":
            break
        time.sleep(0.005)
    os.kill(daemon.process.pid, signal.SIGKILL)
    daemon.process.wait()
    with running_daemon(root=daemon.root) as again:
        after = bootlab(again, "model", "pull", "--tls-verify=false", "--name", "bench", reference)
        if bootlab(again, "model", "verify", "bench").get("ok") is not True:
            sys.exit("the resumed model does not verify")
    refetched = before + int(str(after["fetched"])) - size
    print(f"resume: {before} bytes before the kill, {after['fetched']} after", file=sys.stderr)
    return max(0, refetched)


if __name__ == "__main__":
    main()
