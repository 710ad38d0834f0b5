"""Benchmark: what a `bootc upgrade` downloads after an appliance-only change (goal < 1 %).

In a scratch copy of the repository: build the dev image from scratch (no layer cache), change
only appliance code, rebuild, and sum the compressed size (as a registry serves it, from an OCI
layout export) of the layers the new image has and the old one lacks.
Prints one JSON object as its last stdout line: delta_bytes, image_bytes, delta_ratio,
rebuild_seconds and full_build_seconds. `--quick` builds the first image from the layer cache
too (the sizes stay right; full_build_seconds then times a cached build).

Usage: python -m bench.upgrade_delta [--quick]
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import harness
from image import podman

ROOT = Path(__file__).resolve().parent.parent
GOAL_RATIO = 0.01


def scratch_copy(bench: harness.Bench, target: Path) -> Path:
    """The tracked files plus uncommitted edits: what `build.py` would build from here."""
    files = bench.call(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT
    )
    for name in filter(None, files.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def answers(url: str) -> bool:
    client = podman._answers(url)
    if client is None:
        return False
    client.close()
    return True


@contextlib.contextmanager
def podman_service(bench: harness.Bench) -> Iterator[None]:
    """build.py starts a podman API service that outlives it, for the next build, when none
    answers (image/podman.py); from a bench that would be load left behind. So where none
    answers, the bench runs one on build.py's own socket for as long as it builds."""
    socket = podman._own_socket()
    if any(answers(url) for url in podman._candidate_sockets()):
        yield
        return
    socket.unlink(missing_ok=True)
    command = ["podman", "system", "service", "--time=0", f"unix://{socket}"]
    with bench.spawn(command, stdout=sys.stderr, stderr=sys.stderr):
        deadline = time.monotonic() + 20
        while not answers(f"unix://{socket}"):
            if time.monotonic() > deadline:
                sys.exit("the podman API service did not start")
            time.sleep(0.1)
        yield


def timed_build(bench: harness.Bench, repo: Path, tag: str, *extra: str) -> float:
    started = time.monotonic()
    build = [sys.executable, "build.py", "--quiet", "build", "--profile", "dev", "--tag", tag]
    bench.call([*build, *extra], cwd=repo, capture=False)
    return time.monotonic() - started


def layers(layout: Path, tag: str) -> list[dict[str, Any]]:
    index = json.loads((layout / "index.json").read_text())
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            algorithm, digest = entry["digest"].split(":")
            manifest = json.loads((layout / "blobs" / algorithm / digest).read_text())
            return list(manifest["layers"])
    raise SystemExit(f"{tag} missing from {layout}")


def diff_ids(bench: harness.Bench, tag: str) -> list[str]:
    inspect = ["podman", "inspect", "--format", "{{json .RootFS.Layers}}", tag]
    return list(json.loads(bench.call(inspect)))


def measure(bench: harness.Bench) -> dict[str, object]:
    before, after_tag = bench.image("before"), bench.image("after")
    repo = scratch_copy(bench, bench.root / "repo")
    with podman_service(bench):
        bench.note("building the first image" + (" (layer cache on)" if bench.quick else ""))
        full = timed_build(bench, repo, before, *([] if bench.quick else ["--no-cache"]))
        marker = repo / "appliance" / "bootlab" / "_bench_marker.py"
        marker.write_text(f'"""Changed by bench/upgrade_delta.py."""\nSTAMP = {time.time_ns()}\n')
        bench.note("rebuilding after an appliance-only change")
        rebuild = timed_build(bench, repo, after_tag)

    layout = bench.root / "oci"
    bench.call(["podman", "push", "--compression-format", "gzip", after_tag, f"oci:{layout}:after"])
    after = layers(layout, "after")
    # A registry (and bootc) knows a layer by content; gzip output is not stable across
    # pushes, so identify layers by their uncompressed digest and count compressed bytes.
    known = set(diff_ids(bench, before))
    delta = [
        layer
        for layer, diff_id in zip(after, diff_ids(bench, after_tag), strict=True)
        if diff_id not in known
    ]
    image_bytes = sum(int(layer["size"]) for layer in after)
    delta_bytes = sum(int(layer["size"]) for layer in delta)
    ratio = delta_bytes / image_bytes
    return {
        "delta_bytes": delta_bytes,
        "image_bytes": image_bytes,
        "delta_ratio": round(ratio, 5),
        "delta_layers": len(delta),
        "total_layers": len(after),
        "rebuild_seconds": round(rebuild, 1),
        "full_build_seconds": round(full, 1),
        "rebuild_vs_full_ratio": round(rebuild / full, 3),
        "goal_ratio": GOAL_RATIO,
        "goal_met": ratio < GOAL_RATIO,
    }


if __name__ == "__main__":
    harness.command_line("upgrade_delta", __doc__, measure)
