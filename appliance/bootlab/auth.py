"""Registry credentials in the containers auth file format (auth.json), shared by podman,
skopeo and `bootc upgrade` (/etc/ostree/auth.json)."""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from pathlib import Path

from bootlab import files
from bootlab.errors import BootlabError, die
from bootlab.paths import Paths

OSTREE_AUTH_FILE = Path("/etc/ostree/auth.json")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never let a password reach a log line or a traceback
        return f"Credentials(username={self.username!r}, password=<hidden>)"


def auth_file_candidates() -> list[Path]:
    """Where podman looks, in its order (containers-auth.json(5))."""
    candidates = []
    if explicit := os.environ.get("REGISTRY_AUTH_FILE"):
        candidates.append(Path(explicit))
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    if os.getuid() == 0:
        runtime = "/run"
        candidates.append(Path(f"/run/containers/{os.getuid()}/auth.json"))
    candidates.append(Path(runtime) / "containers" / "auth.json")
    candidates.append(Path.home() / ".config" / "containers" / "auth.json")
    candidates.append(Path.home() / ".docker" / "config.json")
    return list(dict.fromkeys(candidates))


def read_auth_file(path: Path) -> dict[str, dict[str, str]]:
    """The `auths` table of one auth file; a corrupt file is an error that names it."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise die(
            f"cannot read registry auth file {path}: {error.__class__.__name__}",
            hint="fix or remove the file, then log in again",
        ) from None
    auths = document.get("auths", {}) if isinstance(document, dict) else None
    if not isinstance(auths, dict):
        raise die(f"registry auth file {path} has no valid 'auths' table", hint="log in again")
    return auths


def _decode(entry: object, registry: str, path: Path) -> Credentials | None:
    """The entry's credentials; None where a credential helper holds them (an empty entry)."""
    invalid = die(
        f"the entry for {registry} in {path} is not valid", hint=f"podman login {registry}"
    )
    if not isinstance(entry, dict):
        raise invalid
    token = entry.get("auth")
    if token is None and not entry:
        return None
    if not isinstance(token, str):
        raise invalid
    try:
        username, colon, password = base64.b64decode(token, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise invalid from None
    if not colon or not username:
        raise invalid
    return Credentials(username, password)


def repository_of(reference: str) -> str:
    """`host[:port]/path` without tag or digest: `127.0.0.1:5000/a/b:dev` → `127.0.0.1:5000/a/b`."""
    name = reference.split("@", 1)[0]
    head, slash, last = name.rpartition("/")
    return f"{head}{slash}{last.split(':', 1)[0]}" if slash else name


def credentials_for(reference: str, files: list[Path] | None = None) -> Credentials | None:
    """Credentials for an image reference: the most specific matching key wins, like podman.
    `files` defaults to where podman looks for the calling user."""
    registry_path = repository_of(reference)
    keys = []
    parts = registry_path.split("/")
    for depth in range(len(parts), 0, -1):
        keys.append("/".join(parts[:depth]))
    for path in auth_file_candidates() if files is None else files:
        auths = read_auth_file(path)
        for key in keys:
            for candidate in (key, f"https://{key}", f"http://{key}"):
                if candidate in auths:
                    found = _decode(auths[candidate], key, path)
                    if found is not None:
                        return found
    return None


# Storing: one login serves podman/skopeo (the containers auth file) and `bootc upgrade`
# (/etc/ostree/auth.json), so the admin never copies files by hand.


@dataclass(frozen=True)
class Stored:
    registry: str
    username: str
    podman: bool  # in the containers auth file: podman pull, skopeo
    bootc: bool  # in /etc/ostree/auth.json: bootc upgrade / switch


def appliance_files(paths: Paths) -> list[Path]:
    """What the appliance reads, in podman's order, then bootc's file: what `bootlab login`
    wrote is found whoever runs the pull (the daemon has no login session)."""
    return [paths.containers_runtime_auth, paths.containers_auth, paths.ostree_auth]


def _targets(paths: Paths) -> list[Path]:
    targets = [paths.containers_auth, paths.ostree_auth]
    # `podman login` writes the runtime file, which podman reads first: keep it in step, or
    # an old entry there would shadow the one we store.
    if paths.containers_runtime_auth.exists():
        targets.append(paths.containers_runtime_auth)
    return targets


def _load_for_update(path: Path, warnings: list[str]) -> dict[str, object]:
    """The whole document (other keys such as credHelpers kept); a corrupt file is copied
    aside and reported, then replaced, so the login still works and nothing is lost."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        document = None
    if isinstance(document, dict) and isinstance(document.get("auths", {}), dict):
        return document
    backup = files.keep_aside(path, "corrupt")
    warnings.append(
        f"{path} was not a valid auth file; its old content is kept in {backup} "
        "(re-add the other registries from there)"
    )
    return {}


def store(paths: Paths, registry: str, credentials: Credentials) -> list[str]:
    """Save the (already checked) credentials in every auth file; returns warnings."""
    token = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
    warnings: list[str] = []
    for path in _targets(paths):
        document = _load_for_update(path, warnings)
        auths = document.setdefault("auths", {})
        assert isinstance(auths, dict)
        auths[registry] = {"auth": token}
        files.write_atomic(path, (json.dumps(document, indent=2) + "\n").encode(), 0o600)
    return warnings


def remove(paths: Paths, registry: str) -> list[Path]:
    """Drop the registry from every auth file; returns the files it was in."""
    removed = []
    warnings: list[str] = []
    for path in _targets(paths):
        document = _load_for_update(path, warnings)
        auths = document.get("auths", {})
        assert isinstance(auths, dict)
        spellings = (registry, f"https://{registry}", f"http://{registry}")
        keys = [key for key in spellings if key in auths]
        if not keys:
            continue
        for key in keys:
            del auths[key]
        files.write_atomic(path, (json.dumps(document, indent=2) + "\n").encode(), 0o600)
        removed.append(path)
    return removed


def stored(paths: Paths) -> tuple[list[Stored], list[str]]:
    """The registries logged in to, and where; never the secrets. Problems become warnings."""
    found: dict[str, dict[str, object]] = {}
    warnings = []
    for path, purpose in (
        (paths.containers_runtime_auth, "podman"),
        (paths.containers_auth, "podman"),
        (paths.ostree_auth, "bootc"),
    ):
        try:
            auths = read_auth_file(path)
        except BootlabError as error:
            warnings.append(error.message)
            continue
        for key, entry in auths.items():
            registry = key.removeprefix("https://").removeprefix("http://")
            record = found.setdefault(registry, {"username": "", "podman": False, "bootc": False})
            record[purpose] = True
            try:
                credentials = _decode(entry, registry, path)
            except BootlabError as error:
                warnings.append(error.message)
                continue
            if credentials is not None and not record["username"]:
                record["username"] = credentials.username
    entries = [
        Stored(registry, str(r["username"]), bool(r["podman"]), bool(r["bootc"]))
        for registry, r in sorted(found.items())
    ]
    return entries, warnings
