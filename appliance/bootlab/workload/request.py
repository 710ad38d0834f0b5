"""A start request, both ends: the body `bootlab serve|train start` sends, and the settings
the daemon makes of it, to lay over the config (the override file)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bootlab.errors import Exit, die
from bootlab.store.layout import check_name

if TYPE_CHECKING:  # the module itself is pydantic's, which the CLI's path does without
    from bootlab.workload.state import Workload

OPTIONS = ("model", "port", "backend", "max_model_len")
SERVE_ONLY = frozenset(OPTIONS) - {"model"}


def body(options: Mapping[str, Any], job: str | None) -> dict[str, Any]:
    """The request's body, from the command's options (those set) and its job file, if any:
    the file's text goes with where it came from, which its relative paths are relative to.
    Stays light: it runs in the CLI, which must answer quickly."""
    sent = {key: options[key] for key in OPTIONS if options.get(key)}
    if job:
        try:
            sent["job_yaml"] = Path(job).read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise die(f"cannot read {job}: {error}", exit_code=Exit.USAGE) from None
        sent["job_source"] = os.path.abspath(job)
    return sent


def changes(workload: Workload, request: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a start request lays over the config: its options, over its job's."""
    from bootlab import config  # noqa: PLC0415 - pydantic, on the daemon's side only

    settings = dict(request)
    if "model" in settings:
        check_name(settings["model"] or "")
    serve_only = SERVE_ONLY & set(settings)
    if workload == "train" and serve_only:
        raise die(f"train start takes no {', '.join(sorted(serve_only))}", exit_code=Exit.USAGE)
    if workload == "serve" and settings.get("job_yaml") is not None:
        raise die("serve start takes no job", hint="a job is for train start", exit_code=Exit.USAGE)
    job_yaml = settings.pop("job_yaml", None)
    source = str(settings.pop("job_source", None) or "job")
    if isinstance(job_yaml, str):
        settings = {**config.load_job(job_yaml, source), **settings}
    return settings
