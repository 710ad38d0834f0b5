"""Local models: a directory (or one file, e.g. a GGUF) that is bootlabd's own, such as one
the CLI uploaded (read by the CLI with the user's rights) or a finished training job's,
imported into the store: moved where the store is on the same filesystem, else cloned
(reflink) or copied."""

from __future__ import annotations

import os
from pathlib import Path

from bootlab.errors import Exit, die
from bootlab.store.fetch import Progress
from bootlab.store.layout import FileEntry, ModelRecord, Store


def pull(
    text: str,
    name: str,
    store: Store,
    *,
    progress: Progress,
    move: bool = False,
    origin: str | None = None,
) -> ModelRecord:
    """Import a local model; `move` hands its files to the store (a directory made only to
    be published), else they are cloned or copied. `origin` names it in the record (the
    user's path of an upload); default: where it is."""
    root = _root(text)
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
                chosen[str(path.relative_to(root))] = path.resolve()  # a link is no blob
            elif not path.is_dir():
                raise die(f"{path} is not a regular file", exit_code=Exit.CORRUPT)
    for path in chosen.values():
        if not os.access(path, os.R_OK):
            raise die(f"cannot read {path}", hint="check its permissions", exit_code=Exit.ERROR)
    progress.total = sum(path.stat().st_size for path in chosen.values())
    store.ensure()
    # A rename cannot cross filesystems (the store may have a disk of its own).
    move = move and os.stat(root).st_dev == os.stat(store.blobs).st_dev
    entries: dict[str, FileEntry] = {}
    ingested: dict[Path, FileEntry] = {}
    for relative, path in chosen.items():
        if path not in ingested:
            ingested[path] = store.ingest(path, move=move)
        entries[relative] = ingested[path]
        progress.add(entries[relative].size, fetched=True)
    with store.locked(name):
        return store.publish(name, entries, source=f"file://{origin or root}", manifest=None)


def _root(text: str) -> Path:
    """The model's path, resolved, or why it cannot be one."""
    source = Path(text.removeprefix("file://"))
    if not source.is_absolute():
        raise die(
            f"'{text}' is not an absolute path",
            hint="give the model's directory or file as an absolute path",
            exit_code=Exit.USAGE,
        )
    if not source.exists():
        raise die(
            f"'{text}' is neither a model reference nor a path that exists",
            hint="use docker://REGISTRY/REPO:TAG, oci://..., hf://ORG/REPO[@REV], or a "
            "local directory or file",
            exit_code=Exit.USAGE,
        )
    root = source.resolve()
    # The CLI refuses these before it uploads; callers of the store itself are held to it too.
    if len(root.parts) <= 2 and root.is_dir():
        raise die(
            f"refusing to import {root}: that is a system directory, not a model",
            hint="give the model's own directory",
            exit_code=Exit.USAGE,
        )
    return root
