"""hf:// models: a Hugging Face repo at a revision, downloaded by the real huggingface_hub client
from the image's ML venv (the appliance's own venv does not carry it), then ingested.

The download lands in a staging directory named by repo and revision, so a pull that was
interrupted and is run again skips the files that had finished. A token, if one is needed,
comes from HF_TOKEN in the environment (passed on through env, never argv)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bootlab.errors import BootlabError, Exit, die
from bootlab.paths import Paths
from bootlab.run import spawn
from bootlab.store.fetch import Progress
from bootlab.store.layout import FileEntry, ModelRecord, Store, check_name, safe_relative

HUB = "https://huggingface.co"
POLL_S = 0.5
_PART = r"[A-Za-z0-9](?:[\w.-]{0,94}\w)?"
_REFERENCE = re.compile(
    rf"^hf://(?P<repo>{_PART}/{_PART})(?:@(?P<revision>[\w.-]{{1,128}}(?:/[\w.-]{{1,128}})*))?$",
    re.ASCII,
)
_COMMIT = re.compile(r"^[0-9a-f]{40}$")

# Runs under the ML venv's python: it lists the files with their sizes (one JSON line, for the
# progress total and the checks after), then downloads them pinned to that commit, so a branch
# that moves meanwhile cannot mix two commits. A failure is one JSON line, never a traceback.
_CHILD = r"""
import json, sys

FAILED = 3  # the child's own protocol: "a JSON line says why", not an appliance exit code

def say(**fields):
    print(json.dumps(fields), flush=True)

try:
    from huggingface_hub import HfApi, errors, snapshot_download
except ImportError as error:
    say(error="missing", detail=str(error))
    sys.exit(FAILED)

def kind(error):
    if isinstance(error, errors.GatedRepoError):
        return "gated"
    if isinstance(error, errors.RepositoryNotFoundError):
        return "repo"
    if isinstance(error, errors.RevisionNotFoundError):
        return "revision"
    if isinstance(error, errors.HfHubHTTPError):
        return "auth" if error.response.status_code in (401, 403) else "http"
    network = ("httpx", "httpx2", "httpcore", "requests", "urllib3")
    if isinstance(error, (errors.LocalEntryNotFoundError, ConnectionError, TimeoutError)) or (
        type(error).__module__.split(".")[0] in network
    ):
        return "network"
    return "disk" if isinstance(error, OSError) and error.errno == 28 else "other"

repo, revision, local_dir = sys.argv[1], sys.argv[2] or None, sys.argv[3]
try:
    info = HfApi().model_info(repo, revision=revision, files_metadata=True)
    files = [
        {"path": s.rfilename, "size": s.size, "sha256": s.lfs.sha256 if s.lfs else None}
        for s in info.siblings or []
    ]
    say(commit=info.sha, files=files)
    snapshot_download(repo, revision=info.sha, local_dir=local_dir)
except Exception as error:
    status = getattr(getattr(error, "response", None), "status_code", None)
    detail = " ".join(f"{type(error).__name__}: {error}".split())[:300]
    say(error=kind(error), status=status, detail=detail)
    sys.exit(FAILED)
"""

# What each failure the child names means to the user: message, hint, exit code.
_FAILURES = {
    "repo": (
        "{what}: no such model repo on {hub}, or it is private",
        "check the name; for a private repo export HF_TOKEN (a token that can read it)",
        Exit.NOT_FOUND,
    ),
    "gated": (
        "{what} is gated: its terms must be accepted on {hub} first",
        "accept them with your account, then export HF_TOKEN with a token of that account",
        Exit.CREDENTIALS,
    ),
    "auth": ("{hub} refused access to {what} (HTTP {status})", "check HF_TOKEN", Exit.CREDENTIALS),
    "revision": (
        "{what}: the repo has no revision '{revision}'",
        "use a branch, tag or commit of the repo",
        Exit.NOT_FOUND,
    ),
    "network": (
        "cannot reach {hub} to pull {what}: {detail}",
        "check the network or the Hub address (models.hf_endpoint, HF_ENDPOINT); "
        "pull again to resume",
        Exit.UNREACHABLE,
    ),
    "http": (
        "{hub} failed while sending {what}: {detail}",
        "pull again later: it resumes",
        Exit.UNREACHABLE,
    ),
    "disk": (
        "the disk is full while downloading {what}",
        "free space (bootlab model gc), then pull again: it resumes",
        Exit.DISK_FULL,
    ),
    "other": ("downloading {what} failed: {detail}", None, Exit.ERROR),
}


@dataclass(frozen=True)
class _Listing:
    commit: str
    files: dict[str, tuple[int | None, str | None]]  # path: (size, sha256 when LFS)


def parse_reference(text: str) -> tuple[str, str | None]:
    """`hf://org/repo[@revision]` → (repo id, revision or None for the default branch)."""
    match = _REFERENCE.match(text)
    if not match or ".." in text[5:] or "--" in match["repo"]:
        raise die(
            f"'{text}' is not a Hugging Face model reference",
            hint="use hf://ORG/REPO or hf://ORG/REPO@REVISION (a branch, tag or commit)",
            exit_code=Exit.USAGE,
        )
    return match["repo"], match["revision"]


def pull_hf(
    reference: str,
    name: str,
    store: Store,
    paths: Paths,
    progress: Progress,
    *,
    endpoint: str | None = None,
) -> ModelRecord:
    check_name(name)
    repo, revision = parse_reference(reference)
    if endpoint is not None and not re.match(r"^https?://[^/\s]+", endpoint):
        raise die(f"'{endpoint}' is not a Hub address", hint="e.g. https://hf-mirror.example.com")
    python = paths.ml_venv / "bin/python"
    if not python.exists():
        raise _needs_ml_stack(f"{python} is missing")
    store.ensure()
    key = hashlib.sha256(f"{repo}@{revision or ''}".encode()).hexdigest()[:16]
    staging = store.staging / f"hf-{key}"
    # One pull per staging dir: a second one would see the first move its files away.
    with store.locked(staging.name):
        listing = _download(
            python, repo, revision, staging, store=store, progress=progress, endpoint=endpoint
        )
        entries = _ingest(listing, staging, store, what=reference)
        with store.locked(name):
            record = store.publish(
                name, entries, source=f"hf://{repo}@{listing.commit}", manifest=None
            )
        shutil.rmtree(staging)
    return record


def _download(
    python: Path,
    repo: str,
    revision: str | None,
    staging: Path,
    *,
    store: Store,
    progress: Progress,
    endpoint: str | None,
) -> _Listing:
    staging.mkdir(parents=True, exist_ok=True)
    # huggingface_hub names each partial file uniquely and never reuses one: a killed
    # run's leftovers are garbage (finished files are what a re-run skips).
    for stale in staging.glob(".cache/**/*.incomplete"):
        stale.unlink()
    env = {
        **os.environ,
        "HF_HOME": str(staging / ".cache/home"),  # its caches go away with the staging dir
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_ENABLE_HF_TRANSFER": "0",
        "HF_HUB_DISABLE_XET": "1",
    }
    if endpoint is not None:
        env["HF_ENDPOINT"] = endpoint.rstrip("/")
    hub = env.get("HF_ENDPOINT", HUB)
    what = f"hf://{repo}" + (f"@{revision}" if revision else "")
    seen = _size(staging)
    progress.add(seen, fetched=False)
    listing: _Listing | None = None
    argv = [str(python), "-I", "-c", _CHILD, repo, revision or "", str(staging)]
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        # Not run(): this child is watched while it works (progress), and stopped if we stop.
        spawn(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, what="huggingface_hub"
        ) as child,
    ):
        while True:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(POLL_S)
            now = _size(staging)
            progress.add(now - seen, fetched=True)
            seen = now
            if listing is None and (said := _said(out, "commit")) is not None:
                listing = _listing(said, hub, what)
                progress.total = sum(size or 0 for size, _ in listing.files.values())
                store.ensure_space(progress.total - now, what)  # stops the child
            if child.returncode is not None:
                break
        failure = _said(out, "error")
        errors = _read(err)
    if child.returncode == 0 and listing is not None:
        return listing
    if child.returncode < 0:
        raise die(
            f"the download of {what} was interrupted ({signal.Signals(-child.returncode).name})",
            hint="pull again: the files that finished are kept and not fetched again",
            exit_code=Exit.UNREACHABLE,
        )
    if failure is None:
        last = errors.strip().splitlines()[-1:] or ["no output"]
        raise die(f"huggingface_hub failed to download {what}: {last[0]}", exit_code=Exit.ERROR)
    kind = str(failure["error"])
    if kind == "missing":
        raise _needs_ml_stack(f"{python} cannot import it ({failure.get('detail')})")
    message, hint, code = _FAILURES.get(kind, _FAILURES["other"])
    fields = {"what": what, "hub": hub, "revision": revision or "main", **failure}
    raise die(message.format(**fields), hint=hint, exit_code=code)


def _needs_ml_stack(why: str) -> BootlabError:
    return die(
        f"the hf source needs huggingface_hub from the image's ML stack: {why}",
        hint="use an image that ships the ML stack, or download the model elsewhere and "
        "pull its directory",
    )


def _listing(said: dict[str, Any], hub: str, what: str) -> _Listing:
    commit, files = said.get("commit"), said.get("files")
    if not isinstance(commit, str) or not _COMMIT.match(commit) or not isinstance(files, list):
        raise die(f"{hub} does not answer like the Hugging Face Hub", exit_code=Exit.CORRUPT)
    return _Listing(
        commit,
        {
            str(safe_relative(str(item["path"]), where=what)): (
                item.get("size"),
                item.get("sha256"),
            )
            for item in files
        },
    )


def _ingest(listing: _Listing, staging: Path, store: Store, *, what: str) -> dict[str, FileEntry]:
    """The files the commit lists, nothing else (the staging dir may hold an older commit's
    leftovers, and huggingface_hub's own .cache/), checked against the Hub's sizes and hashes."""
    missing = [path for path in listing.files if not (staging / path).is_file()]
    if missing:
        raise die(
            f"{what}: {len(missing)} file(s) did not arrive ({', '.join(missing[:3])})",
            hint="pull again: it resumes",
            exit_code=Exit.UNREACHABLE,
        )
    entries = {}
    for path, (size, sha256) in listing.files.items():
        entry = store.ingest(staging / path, move=True)
        if (size is not None and entry.size != size) or (
            sha256 is not None and entry.digest != f"sha256:{sha256}"
        ):
            raise die(
                f"{what}: {path} arrived with other content than the Hub lists "
                f"({entry.digest}, {entry.size} bytes)",
                hint="pull again; if it persists, the mirror serves a corrupt file",
                exit_code=Exit.CORRUPT,
            )
        entries[path] = entry
    return entries


def _size(directory: Path) -> int:
    total = 0
    for folder, _, names in os.walk(directory):
        for name in names:
            with contextlib.suppress(FileNotFoundError):  # the child renamed or removed it
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def _read(handle: IO[bytes]) -> str:
    # pread: the child shares this file's offset; seeking here would move where it writes.
    return os.pread(handle.fileno(), os.fstat(handle.fileno()).st_size, 0).decode(errors="replace")


def _said(handle: IO[bytes], key: str) -> dict[str, Any] | None:
    """The child's first JSON line carrying `key` (other output is ignored)."""
    for line in _read(handle).splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and key in document:
            return document
    return None
