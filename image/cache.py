"""The build cache: slow things (debootstrap rootfs, wheelhouses) kept under keys of inputs."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def cache_dir() -> Path:
    root = Path(os.environ.get("BOOTLAB_CACHE") or Path.home() / ".cache" / "bootlab")
    root.mkdir(parents=True, exist_ok=True)
    return root


def key_of(*inputs: object) -> str:
    """A short, stable key: the same inputs always map to the same cache entry."""
    blob = json.dumps(inputs, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
