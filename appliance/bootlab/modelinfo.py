"""What a model directory says about itself: its config.json and the size of its weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def hf_config(model: Path) -> dict[str, Any]:
    """config.json as a mapping; empty when absent or unreadable."""
    try:
        document = json.loads((model / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def weights_bytes(model: Path) -> int:
    files = [p for pattern in ("*.safetensors", "*.bin", "*.gguf") for p in model.glob(pattern)]
    return sum(path.stat().st_size for path in files)
