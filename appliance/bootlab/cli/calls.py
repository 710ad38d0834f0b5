"""The client commands' side of bootlabd: one request, its reply read as the `bootlab.api`
model the daemon made it from, and a job (pull, push, generate) followed to its end."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from bootlab.cli import output
from bootlab.errors import BootlabError, die
from bootlab.paths import Paths

if TYPE_CHECKING:
    from bootlab.api import Job


class Reply(dict[str, Any]):
    """A JSON object from bootlabd, read by attribute: `status.services[0].unit`.

    Handlers annotate a reply with the `bootlab.api` model the daemon built it from
    (`status: Status = ask(...)`), so mypy holds every field the CLI reads to the shared
    schema and a renamed field fails the type check. The reply is not validated a second
    time: importing and building the pydantic models costs more than `bootlab status`'s
    budget (README, architecture notes), and the daemon answers `model.model_dump()` of that
    very model. Being a dict, a reply prints as the same JSON with `--json`."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _reply(document: Any) -> Any:
    if isinstance(document, dict):
        return Reply((key, _reply(value)) for key, value in document.items())
    if isinstance(document, list):
        return [_reply(value) for value in document]
    return document


def plain(value: object) -> Any:
    """A reply (or a part of one) as plain dicts and lists, for printers that want exactly
    those (YAML)."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def _socket(paths: Paths) -> Path:
    socket_path = os.environ.get("BOOTLAB_SOCKET")
    return paths.socket if not socket_path else Path(socket_path)


def ask(paths: Paths, method: str, path: str, body: Any = None) -> Any:
    """One request to bootlabd; annotate what it returns with its `bootlab.api` model."""
    from bootlab import client  # noqa: PLC0415 - the entrypoints never need it

    return _reply(client.call(_socket(paths), method, path, body))


def send(paths: Paths, path: str, produce: Callable[[BinaryIO], None]) -> Any:
    """POST what `produce` writes, streamed as it is written (an upload)."""
    from bootlab import client  # noqa: PLC0415 - the entrypoints never need it

    return _reply(client.send_stream(_socket(paths), path, produce))


def follow(paths: Paths, job: Job, quiet: bool) -> Job:
    """Poll the job until it ends, drawing a progress bar on a terminal (a line every
    few seconds elsewhere); a failed job becomes its error."""
    interactive = sys.stderr.isatty() and not quiet
    last_line = 0.0
    while job.state == "running":
        job = ask(paths, "GET", f"/v1/jobs/{job.id}/wait")
        if interactive:
            print("\r" + output.progress_line(job), end="", file=sys.stderr, flush=True)
        elif not quiet and time.monotonic() - last_line > 5:
            print(output.progress_line(job), file=sys.stderr, flush=True)
            last_line = time.monotonic()
    if interactive:
        print("\r" + output.progress_line(job), file=sys.stderr)
    if job.state == "failed":
        error = job.error
        if error is None:  # bootlabd always says why; this only keeps the type honest
            raise die(f"the {job.kind} of {job.target} failed")
        raise BootlabError(error.error, error.hint, error.code)
    return job
