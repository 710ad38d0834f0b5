"""API keys of OpenAI-compatible endpoints (the served model, a teacher, a judge): read from
a file, never taken from argv, with one error each for a file that cannot be read or is empty."""

from __future__ import annotations

import os
from pathlib import Path

from bootlab.errors import Exit, die


def read_api_key(
    path: str | Path,
    *,
    setting: str = "the API key file",
    hint: str | None = None,
    exit_code: Exit = Exit.NOT_CONFIGURED,
) -> str:
    """The key in `path` (its one line, without surrounding white space). `setting` names
    where the path came from, for the error; the key itself is never in a message."""
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except OSError as error:
        raise die(
            f"cannot read {setting} {path}: {error.strerror}", hint=hint, exit_code=exit_code
        ) from None
    except UnicodeDecodeError:
        raise die(f"{setting} {path} is not UTF-8 text", hint=hint, exit_code=exit_code) from None
    if not key:
        raise die(f"{setting} {path} is empty", hint=hint, exit_code=exit_code)
    return key


def served_key(api_key_file: str | None) -> str | None:
    """What a client of bootlab-serve's endpoint sends (chat, the judge of `model evaluate`):
    $BOOTLAB_API_KEY, else the key in serve.api_key_file; None where neither is set."""
    if key := os.environ.get("BOOTLAB_API_KEY"):
        return key
    if api_key_file is None:
        return None
    return read_api_key(
        api_key_file,
        setting="serve.api_key_file",
        hint="run as root, or pass the key in $BOOTLAB_API_KEY",
        exit_code=Exit.NO_PERMISSION,
    )
