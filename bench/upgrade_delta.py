"""Benchmark: what a `bootc upgrade` downloads after an appliance-only change (goal < 1 %).

In a scratch copy of the repository: build the dev image from scratch (no layer cache), change
only appliance code, rebuild, and sum the compressed size (as a registry serves it, from an OCI
layout export) of the layers the new image has and the old one lacks.
Prints one JSON object as its last stdout line: delta_bytes, image_bytes, delta_ratio,
rebuild_seconds and full_build_seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GOAL_RATIO = 0.01
BEFORE, AFTER = "localhost/bootlab-bench:before", "localhost/bootlab-bench:after"


def sh(*argv: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(part) for part in argv], cwd=cwd, check=True, capture_output=True, text=True
    )
    return result.stdout


def scratch_copy(target: Path) -> Path:
    """The tracked files plus uncommitted edits: what `build.py` would build from here."""
    files = sh("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for name in filter(None, files.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def timed_build(repo: Path, tag: str, *extra: str) -> float:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "build.py", "--quiet", "build", "--profile", "dev", "--tag", tag, *extra],
        cwd=repo,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.monotonic() - started


def layers(layout: Path, tag: str) -> list[dict[str, Any]]:
    index = json.loads((layout / "index.json").read_text())
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            algorithm, digest = entry["digest"].split(":")
            manifest = json.loads((layout / "blobs" / algorithm / digest).read_text())
            return list(manifest["layers"])
    raise SystemExit(f"{tag} missing from {layout}")


def diff_ids(tag: str) -> list[str]:
    return list(json.loads(sh("podman", "inspect", "--format", "{{json .RootFS.Layers}}", tag)))


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bootlab-bench-") as work:
        repo = scratch_copy(Path(work) / "repo")
        full = timed_build(repo, BEFORE, "--no-cache")
        marker = repo / "appliance" / "bootlab" / "_bench_marker.py"
        marker.write_text(f'"""Changed by bench/upgrade_delta.py."""\nSTAMP = {time.time_ns()}\n')
        rebuild = timed_build(repo, AFTER)

        layout = Path(work) / "oci"
        sh("podman", "push", "--compression-format", "gzip", AFTER, f"oci:{layout}:after")
        after = layers(layout, "after")
        # A registry (and bootc) knows a layer by content; gzip output is not stable across
        # pushes, so identify layers by their uncompressed digest and count compressed bytes.
        known = set(diff_ids(BEFORE))
        delta = [
            layer
            for layer, diff_id in zip(after, diff_ids(AFTER), strict=True)
            if diff_id not in known
        ]
        for tag in (BEFORE, AFTER):
            subprocess.run(["podman", "rmi", "-f", tag], check=False, capture_output=True)

    image_bytes = sum(int(layer["size"]) for layer in after)
    delta_bytes = sum(int(layer["size"]) for layer in delta)
    ratio = delta_bytes / image_bytes
    print(
        json.dumps(
            {
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
        )
    )


if __name__ == "__main__":
    os.environ.setdefault("CONTAINERS_CONF", str(ROOT / ".ci" / "containers.conf"))
    main()
