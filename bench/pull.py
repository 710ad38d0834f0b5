"""Benchmark: pulling a ~1 GiB model from the loopback registry, bootlab against skopeo.

In one run: make a model (four random safetensors files and a config), push it as an OCI
artifact to a local docker-registry with htpasswd auth, then (after one untimed pull by
each) time `skopeo copy` to an `oci:` directory (A) and `bootlab model pull` (CLI →
bootlabd) (B), interleaved by the harness in 6 rounds, with `sync` after each; then kill
bootlabd at half of a pull, start it again, pull again and count what came twice.

Prints one JSON object as its last stdout line: skopeo_mb_s and bootlab_mb_s (medians);
ratio, the median of each round's bootlab over skopeo throughput (goal >= 1.2), its spread
and control (skopeo against skopeo); resume_refetch_bytes (goal <= 64 MiB);
disk_footprint_ratio, store bytes on disk over model bytes (goal 1.0). `--quick`: four
8 MiB files, 2 rounds.

Usage: python -m bench.pull [--quick]
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import struct
import sys
import time
from pathlib import Path

from bootlab import auth, client
from bootlab.paths import Paths
from bootlab.store.fetch import Progress
from bootlab.store.layout import model_store
from bootlab.store.sources import local
from bootlab.store.sources import registry as registry_source

from bench import harness
from tests.support.appliance_daemon import Daemon, running_daemon
from tests.support.infra import Registry, _registry

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20
SHARDS = 4
SHARD_BYTES, QUICK_SHARD_BYTES = 256 * MiB, 8 * MiB
ROUNDS = 6


def write_safetensors(path: Path, size: int) -> None:
    """A valid safetensors file: a header naming one uint8 tensor, then random bytes."""
    header = json.dumps({"weight": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}})
    encoded = header.encode().ljust(-(-len(header) // 8) * 8)
    chunk = min(size, 16 * MiB)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)) + encoded)
        for _ in range(size // chunk):
            handle.write(os.urandom(chunk))


def make_model(directory: Path, shard_bytes: int) -> None:
    directory.mkdir()
    for index in range(SHARDS):
        write_safetensors(
            directory / f"model-{index + 1:05d}-of-{SHARDS:05d}.safetensors", shard_bytes
        )
    (directory / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))


def bootlab(bench: harness.Bench, daemon: Daemon, *args: str) -> dict[str, object]:
    out = bench.call(
        [sys.executable, "-m", "bootlab.cli", *args, "--json"],
        env={**daemon.env(), "PYTHONPATH": str(ROOT / "appliance")},
    )
    return json.loads(out)  # type: ignore[no-any-return]


def measure(bench: harness.Bench) -> dict[str, object]:
    work = bench.root
    (work / "registry").mkdir()
    (work / "daemon").mkdir()
    with (
        _registry(work / "registry", tls=False) as registry,
        running_daemon(root=work / "daemon") as daemon,
    ):
        return pulls(bench, registry, daemon)


def pulls(bench: harness.Bench, registry: Registry, daemon: Daemon) -> dict[str, object]:
    work = bench.root
    credentials = auth.Credentials(registry.username, registry.password)
    # The model, pushed once with bootlab's own push (an OCI artifact, one layer a file).
    builder = Paths(work / "builder")
    auth.store(builder, registry.host, credentials)
    make_model(work / "model", QUICK_SHARD_BYTES if bench.quick else SHARD_BYTES)
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
    (work / "skopeo").mkdir()
    authfile = registry.auth_file(work / "skopeo")  # the password stays out of argv
    skopeo = ["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--src-authfile"]
    footprints = []

    def pull(side: str, index: int) -> float:
        """One pull by skopeo (A) or bootlab (B), its MB/s; what it fetched is removed after
        (untimed), and written out, so the next pull starts alike."""
        started = time.perf_counter()
        if side == harness.A:
            target = work / f"oci-{index}"
            bench.call([*skopeo, str(authfile), reference, f"oci:{target}:m"])
            seconds = time.perf_counter() - started
            shutil.rmtree(target)
        else:
            bootlab(
                bench, daemon, "model", "pull", "--tls-verify=false", "--name", "bench", reference
            )
            seconds = time.perf_counter() - started
            footprints.append(model_store(appliance).footprint() / size)
            bootlab(bench, daemon, "model", "remove", "bench")
            bootlab(bench, daemon, "model", "gc")
        os.sync()
        return size / seconds / 1e6

    # Untimed: both tools, and bootlabd's first pull, start warm like the rest.
    pull(harness.A, -1)
    pull(harness.B, -1)
    runs = bench.interleave(2 if bench.quick else ROUNDS, pull)
    refetched = resume_after_kill(bench, daemon, reference, size)
    return {
        "model_bytes": size,
        "skopeo_mb_s": round(statistics.median(runs.values(harness.A)), 1),
        "bootlab_mb_s": round(statistics.median(runs.values(harness.B)), 1),
        **runs.figures(),
        "resume_refetch_bytes": refetched,
        "disk_footprint_ratio": round(max(footprints), 4),
        "goals": {"ratio": 1.2, "resume_refetch_bytes": 64 * MiB, "disk_footprint_ratio": 1.0},
    }


def resume_after_kill(bench: harness.Bench, daemon: Daemon, reference: str, size: int) -> int:
    """kill -9 bootlabd half-way through a pull, start it again, pull again. Returns the
    bytes that crossed the network twice: fetched before the kill (as the job last said,
    a moment before the kill) plus fetched after, minus the model's size."""
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
        pull = ["model", "pull", "--tls-verify=false", "--name", "bench", reference]
        after = bootlab(bench, again, *pull)
        if bootlab(bench, again, "model", "verify", "bench").get("ok") is not True:
            sys.exit("the resumed model does not verify")
    refetched = before + int(str(after["fetched"])) - size
    bench.note(f"resume: {before} bytes before the kill, {after['fetched']} after")
    return max(0, refetched)


if __name__ == "__main__":
    harness.command_line("pull", __doc__, measure)
