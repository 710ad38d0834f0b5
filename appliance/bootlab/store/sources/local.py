"""Local models: a directory (or one file, e.g. a GGUF) on this machine, imported into the
store by reflink where the filesystem can (no second copy), else copied."""

from __future__ import annotations

import os
from pathlib import Path

from bootlab.errors import Exit, die
from bootlab.store.fetch import Progress
from bootlab.store.layout import FileEntry, ModelRecord, Store


def _in_private_tmp(path: Path) -> bool:
    """A path under /tmp or /var/tmp, asked of a process that systemd started (bootlabd):
    the user's file is there, but in another mount namespace than ours."""
    under_systemd = bool(os.environ.get("INVOCATION_ID"))
    private = ("/tmp", "/var/tmp")  # noqa: S108 - compared with, never written to
    return under_systemd and any(path.is_relative_to(tmp) for tmp in private)


def pull(
    text: str, name: str, store: Store, *, progress: Progress, move: bool = False
) -> ModelRecord:
    """Import a local model; `move` hands its files to the store (a directory made only to
    be published, such as a finished training job's), else they are cloned or copied."""
    source = Path(text.removeprefix("file://"))
    if not source.is_absolute():
        raise die(
            f"'{text}' is not an absolute path",
            hint="give the model's directory or file as an absolute path",
            exit_code=Exit.USAGE,
        )
    if not source.exists():
        if _in_private_tmp(source):
            raise die(
                f"bootlab cannot see {source}: its services have a /tmp and /var/tmp of their "
                "own (systemd's PrivateTmp=)",
                hint="move the model out of /tmp, e.g. into your home directory or "
                "/var/lib/bootlab, and pull it from there",
                exit_code=Exit.USAGE,
            )
        raise die(
            f"'{text}' is neither a model reference nor a path that exists",
            hint="use docker://REGISTRY/REPO:TAG, oci://..., hf://ORG/REPO[@REV], or a "
            "local directory or file",
            exit_code=Exit.USAGE,
        )
    root = source.resolve()
    if len(root.parts) <= 2 and root.is_dir():
        raise die(
            f"refusing to import {root}: that is a system directory, not a model",
            hint="give the model's own directory",
            exit_code=Exit.USAGE,
        )
    if root.is_file():
        chosen = {root.name: root}
    else:
        chosen = {}
        for path in sorted(root.rglob("*")):
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                raise die(
                    f"{path} links outside {root}",
                    hint="copy the file in instead",
                    exit_code=Exit.CORRUPT,
                )
            if path.is_file():
                chosen[str(path.relative_to(root))] = path
            elif not path.is_dir():
                raise die(f"{path} is not a regular file", exit_code=Exit.CORRUPT)
    progress.total = sum(path.stat().st_size for path in chosen.values())
    entries: dict[str, FileEntry] = {}
    for relative, path in chosen.items():
        if not os.access(path, os.R_OK):
            raise die(f"cannot read {path}", hint="check its permissions", exit_code=Exit.ERROR)
        entry = store.ingest(path, move=move)
        entries[relative] = entry
        progress.add(entry.size, fetched=True)
    with store.locked(name):
        return store.publish(name, entries, source=f"file://{root}", manifest=None)
