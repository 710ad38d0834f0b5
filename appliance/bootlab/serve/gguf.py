"""Just enough of the GGUF format to read a model's metadata (its context length), without
loading any weights. Layout: magic, version, tensor count, then key/value pairs."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

# Value type ids from the GGUF specification, with the struct format of the fixed-size ones.
_FIXED = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_MAX_STRING = 1 << 24


class GgufError(ValueError):
    pass


def metadata(path: Path, wanted: set[str] | None = None) -> dict[str, Any]:
    """The key/value metadata (arrays are skipped); only `wanted` keys when given."""
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise GgufError(f"{path} is not a GGUF file")
        (version,) = _unpack(handle, "<I")
        if version not in (2, 3):
            raise GgufError(f"{path}: GGUF version {version} is not supported")
        _tensors, count = _unpack(handle, "<QQ")
        found: dict[str, Any] = {}
        for _ in range(count):
            key = _string(handle)
            (kind,) = _unpack(handle, "<I")
            value = _value(handle, kind)
            if wanted is None or key in wanted:
                found[key] = value
        return found


def context_length(path: Path) -> int | None:
    """`<architecture>.context_length`: the longest context the model was trained for."""
    data = metadata(path)
    architecture = data.get("general.architecture")
    value = data.get(f"{architecture}.context_length")
    return int(value) if isinstance(value, int) else None


def _unpack(handle: BinaryIO, fmt: str) -> tuple[Any, ...]:
    size = struct.calcsize(fmt)
    raw = handle.read(size)
    if len(raw) != size:
        raise GgufError("the GGUF header ends early")
    return struct.unpack(fmt, raw)


def _string(handle: BinaryIO) -> str:
    (length,) = _unpack(handle, "<Q")
    if length > _MAX_STRING:
        raise GgufError("a GGUF string is implausibly long")
    return handle.read(length).decode("utf-8", errors="replace")


def _value(handle: BinaryIO, kind: int) -> Any:
    if kind in _FIXED:
        return _unpack(handle, "<" + _FIXED[kind])[0]
    if kind == _STRING:
        return _string(handle)
    if kind == _ARRAY:
        item, length = _unpack(handle, "<IQ")
        if item in _FIXED:  # skipped: vocabularies are large and not needed here
            handle.seek(struct.calcsize(_FIXED[item]) * length, 1)
        else:
            for _ in range(length):
                _value(handle, item)
        return None
    raise GgufError(f"unknown GGUF value type {kind}")
