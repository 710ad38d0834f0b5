"""podman through its REST API (podman-py): the service socket, build, inspect and push.

`build.py` talks to the podman API socket rather than the CLI so builds stream structured
progress and errors; when no service answers, one is started for this user and exits when idle.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from bootlab.errors import die
from image.cache import cache_dir
from image.log import log
from image.run import require

IDLE_SECONDS = 600
_IMAGE_ID = re.compile(r"[0-9a-f]{64}")


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
    except Exception:  # noqa: BLE001 - any failure means "not this socket"
        client.close()
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
    subprocess.Popen(  # noqa: S603 - fixed argv
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


def inspect(reference: str) -> dict[str, Any]:
    if not image_exists(reference):
        raise die(f"image {reference} does not exist locally", hint="run `python build.py build`")
    return dict(client().images.get(reference).attrs)


def build(
    context: Path,
    tag: str,
    build_args: Mapping[str, str],
    on_output: Callable[[str], None],
) -> BuiltImage:
    """Build `context` (holding its Containerfile), streaming build output as it comes."""
    from podman import api  # noqa: PLC0415

    params = {
        "dockerfile": "Containerfile",
        "t": tag,
        "layers": True,
        "rm": True,
        "forcerm": True,
        "buildargs": json.dumps(dict(build_args)),
    }
    body = api.create_tar(anchor=str(context), gzip=False)
    try:
        response = client().api.post(
            "/build",
            params=params,
            data=body,
            headers={"Content-type": "application/x-tar"},
            stream=True,
        )
        response.raise_for_status()
        image_id = _follow_build(response.iter_lines(), on_output)
    finally:
        body.close()
    return describe(tag, image_id)


def _follow_build(lines: Iterator[bytes], on_output: Callable[[str], None]) -> str:
    image_id = ""
    recent: list[str] = []
    for raw in lines:
        if not raw:
            continue
        event = json.loads(raw)
        if "stream" in event:
            text = str(event["stream"])
            on_output(text)
            if _IMAGE_ID.fullmatch(text.strip()):
                image_id = text.strip()
            recent = (recent + text.splitlines())[-12:]
        if "error" in event:
            detail = "\n    ".join(line for line in recent if line.strip())
            raise die(
                f"image build failed: {str(event['error']).strip()}\n    {detail}",
                hint="the build output above shows the failing step",
            )
        if "aux" in event and isinstance(event["aux"], dict) and "ID" in event["aux"]:
            image_id = str(event["aux"]["ID"])
    if not image_id:
        raise die("image build ended without an image id", hint="see the build output above")
    return image_id.removeprefix("sha256:")


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
    credentials: Mapping[str, str] | None,
    tls_verify: bool,
) -> None:
    """Push `source` to `destination`; a refusal from the registry becomes one clear error."""
    from podman.errors import APIError  # noqa: PLC0415

    registry = destination.split("/", 1)[0]
    try:
        events = client().images.push(
            source,
            destination=destination,
            auth_config=dict(credentials) if credentials else None,
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
    if "x509" in lowered or "tls" in lowered and "http response" in lowered:
        return die(
            f"TLS to {registry} failed: {detail.splitlines()[-1]}",
            hint="fix its certificate, or set registry.tls_verify: false for a test registry",
        )
    return die(f"push to {destination} failed: {detail.strip()}")
