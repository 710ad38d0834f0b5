"""podman for the build side: images are inspected and pushed through the REST API socket
(podman-py), built with `podman build` (see `build` for why).

When no API service answers, one is started for this user and exits when idle.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from bootlab.auth import Credentials
from bootlab.errors import die

from image.cache import cache_dir
from image.log import log
from image.run import require, run

IDLE_SECONDS = 600


@dataclass(frozen=True)
class Layer:
    size: int
    created_by: str


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    image_id: str
    digest: str
    layers: tuple[Layer, ...]


def _candidate_sockets() -> list[str]:
    candidates = []
    if os.environ.get("CONTAINER_HOST", "").startswith("unix://"):
        candidates.append(os.environ["CONTAINER_HOST"])
    if os.geteuid() == 0:
        candidates.append("unix:///run/podman/podman.sock")
    elif runtime := os.environ.get("XDG_RUNTIME_DIR"):
        candidates.append(f"unix://{runtime}/podman/podman.sock")
    candidates.append(f"unix://{_own_socket()}")
    return candidates


def _own_socket() -> Path:
    return cache_dir() / "podman.sock"


def _answers(url: str) -> Any | None:
    from podman import PodmanClient  # noqa: PLC0415 - import cost only when podman is used

    path = Path(url.removeprefix("unix://"))
    if not path.exists():
        return None
    client = PodmanClient(base_url=url, timeout=3600)
    try:
        client.ping()
    except Exception:
        client.close()  # type: ignore[no-untyped-call]
        return None
    return client


@cache
def client() -> Any:
    """A podman-py client on a live API socket, starting `podman system service` if needed."""
    for url in _candidate_sockets():
        found = _answers(url)
        if found is not None:
            return found
    podman = require("podman")
    socket = _own_socket()
    socket.unlink(missing_ok=True)
    log(f"  starting podman API service on {socket} (exits after {IDLE_SECONDS}s idle)")
    subprocess.Popen(
        [podman, "system", "service", f"--time={IDLE_SECONDS}", f"unix://{socket}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives this command, so the next build reuses it
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = _answers(f"unix://{socket}")
        if found is not None:
            return found
        time.sleep(0.1)
    raise die(
        "the podman API service did not start",
        hint=f"run `podman system service --time=0 unix://{socket}` by hand to see why",
    )


def image_exists(reference: str) -> bool:
    return bool(client().images.exists(reference))


def image_label(reference: str, label: str) -> str | None:
    if not image_exists(reference):
        return None
    labels = client().images.get(reference).labels or {}
    value = labels.get(label)
    return str(value) if value is not None else None


def build(
    context: Path,
    tag: str,
    labels: Mapping[str, str],
    no_cache: bool = False,
    timestamp: int | None = None,
    *,
    build_args: Mapping[str, str] | None = None,
) -> BuiltImage:
    """Build `context` (holding its Containerfile); podman's output streams to the terminal.

    This step runs `podman build` rather than the API's /build: podman 4.3's API service never
    reuses cached layers (measured here: no cache hit in repeated identical builds through the
    libpod and the compat endpoint), which would rebuild every layer and make every upgrade
    ship the whole image. Inspection and push go through the API.
    """
    with tempfile.TemporaryDirectory() as scratch:
        id_file = Path(scratch) / "iid"
        command: list[str | Path] = [
            "podman",
            "build",
            "--layers",
            f"--iidfile={id_file}",
            "--file",
            context / "Containerfile",
            "--tag",
            tag,
        ]
        command += [f"--label={name}={value}" for name, value in labels.items()]
        command += [f"--build-arg={name}={value}" for name, value in (build_args or {}).items()]
        if no_cache:
            command.append("--no-cache")
        if timestamp is not None:
            command.append(f"--timestamp={timestamp}")
        run([*command, context], what=f"building {tag} (the build output above shows why)")
        image_id = id_file.read_text().strip().removeprefix("sha256:")
    return describe(tag, image_id)


def describe(tag: str, image_id: str | None = None) -> BuiltImage:
    image = client().images.get(image_id or tag)
    attrs = image.attrs
    digest = str(attrs.get("Digest") or "")
    layers = tuple(
        Layer(size=int(entry.get("Size", 0)), created_by=str(entry.get("CreatedBy", "")))
        for entry in reversed(image.history())
    )
    return BuiltImage(tag=tag, image_id=str(image.id), digest=digest, layers=layers)


def push(
    source: str,
    destination: str,
    credentials: Credentials | None,
    tls_verify: bool,
) -> None:
    """Push `source` to `destination`; a refusal from the registry becomes one clear error."""
    from podman.errors import APIError  # noqa: PLC0415

    registry = destination.split("/", 1)[0]
    try:
        events = client().images.push(
            source,
            destination=destination,
            auth_config=(
                {"username": credentials.username, "password": credentials.password}
                if credentials
                else None
            ),
            tlsVerify=tls_verify,
            stream=True,
            decode=True,
        )
        for event in events:
            if event.get("error"):
                raise _push_error(str(event["error"]), registry, destination)
            if event.get("stream"):
                log(f"  {str(event['stream']).strip()}")
    except APIError as error:
        raise _push_error(str(error.explanation or error), registry, destination) from None


def _push_error(detail: str, registry: str, destination: str) -> Exception:
    lowered = detail.lower()
    if "unauthorized" in lowered or "authentication required" in lowered or "401" in lowered:
        return die(
            f"registry {registry} refused the credentials for {destination}",
            hint=f"log in again: podman login {registry}",
        )
    if "connection refused" in lowered or "no such host" in lowered:
        return die(f"registry {registry} is not reachable", hint="check the address and network")
    if "x509" in lowered or ("tls" in lowered and "http response" in lowered):
        return die(
            f"TLS to {registry} failed: {detail.splitlines()[-1]}",
            hint="fix its certificate, or set registry.tls_verify: false for a test registry",
        )
    return die(f"push to {destination} failed: {detail.strip()}")
