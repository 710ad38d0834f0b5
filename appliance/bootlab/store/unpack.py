"""Model files out of image layers (tar, optionally gzip), safely: regular files only,
every path inside the model directory, links only to files of the same model."""

from __future__ import annotations

import hashlib
import os
import tarfile
import time
from pathlib import Path, PurePosixPath

from bootlab.errors import Exit, die
from bootlab.store.layout import FileEntry, Store, safe_relative

_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"


def unpack_layer(layer: Path, store: Store, files: dict[str, FileEntry], *, where: str) -> None:
    """Apply one layer to `files` (path → blob), as an image's layers stack: later layers
    replace files, whiteouts delete them. Content goes straight into blobs, hashed while
    written."""
    try:
        archive = tarfile.open(layer, "r:*")  # noqa: SIM115 - closed below, after the loop
    except (tarfile.TarError, OSError) as error:
        raise die(
            f"{where}: the layer is not a readable tar archive ({error})", exit_code=Exit.CORRUPT
        ) from None
    links: list[tuple[str, str]] = []
    try:
        for member in archive:
            path = str(safe_relative(member.name, where=where))
            if _whiteout(path, files) or member.isdir():
                continue
            if member.isfile():
                reader = archive.extractfile(member)
                assert reader is not None
                files[path] = _into_blob(reader, member.size, store, where)
            elif member.issym() or member.islnk():
                target = _link_target(path, member, where)
                links.append((path, target))
            else:
                raise die(
                    f"{where}: '{member.name}' is a device, fifo or other special file",
                    hint="model images carry regular files only; do not use this image",
                    exit_code=Exit.CORRUPT,
                )
    except tarfile.TarError as error:
        raise die(
            f"{where}: the layer is truncated or corrupt ({error})", exit_code=Exit.CORRUPT
        ) from None
    finally:
        archive.close()
    for path, target in links:
        if target not in files:
            raise die(
                f"{where}: link '{path}' points at '{target}', which is no model file",
                exit_code=Exit.CORRUPT,
            )
        files[path] = files[target]


def _whiteout(path: str, files: dict[str, FileEntry]) -> bool:
    """Apply an overlay whiteout entry (a file deleted by this layer); False for others."""
    base = PurePosixPath(path).name
    parent = PurePosixPath(path).parent
    if base == _OPAQUE:
        gone = str(parent)
    elif base.startswith(_WHITEOUT):
        gone = str(parent / base[len(_WHITEOUT) :])
    else:
        return False
    prefix = "" if gone == "." else gone + "/"
    for key in [k for k in files if k == gone or k.startswith(prefix)]:
        del files[key]
    return True


def _link_target(path: str, member: tarfile.TarInfo, where: str) -> str:
    """Where a symlink or hard link leads, as a path inside the model; outside is refused."""
    if member.islnk():
        return str(safe_relative(member.linkname, where=where))
    if member.linkname.startswith("/"):
        raise die(
            f"{where}: symlink '{member.name}' points outside the model directory "
            f"({member.linkname})",
            exit_code=Exit.CORRUPT,
        )
    joined = os.path.normpath(str(PurePosixPath(path).parent / member.linkname))
    if joined.startswith("..") or joined == ".":
        raise die(
            f"{where}: symlink '{member.name}' escapes the model directory ({member.linkname})",
            exit_code=Exit.CORRUPT,
        )
    return joined


def _into_blob(reader: object, size: int, store: Store, where: str) -> FileEntry:
    scratch = store.partial / f"unpack-{os.getpid()}-{time.monotonic_ns()}"
    digest = hashlib.sha256()
    written = 0
    try:
        with scratch.open("wb") as writer:
            while block := reader.read(4 << 20):  # type: ignore[attr-defined]
                digest.update(block)
                writer.write(block)
                written += len(block)
        if written != size:
            raise die(
                f"{where}: a file ends early ({written} of {size} bytes)", exit_code=Exit.CORRUPT
            )
        found = f"sha256:{digest.hexdigest()}"
        if store.has_blob(found, size):
            scratch.unlink()
        else:
            store.commit(scratch, found)
        return FileEntry(found, size)
    finally:
        scratch.unlink(missing_ok=True)
