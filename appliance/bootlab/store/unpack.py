"""Tar archives unpacked safely: model files out of image layers (tar, optionally gzip) into
blobs (regular files only, links only to files of the same model), and uploads into a
directory of bootlabd's (files, folders and links, every path and link inside it)."""

from __future__ import annotations

import errno
import hashlib
import os
import tarfile
import time
from pathlib import Path, PurePosixPath
from typing import IO, Protocol, cast

from bootlab.errors import Exit, die
from bootlab.store.layout import FileEntry, Store, safe_relative


class Readable(Protocol):
    """What an upload is read from: a request's body, as it arrives."""

    def read(self, size: int = -1, /) -> bytes: ...


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


def _link_target(
    path: str, member: tarfile.TarInfo, where: str, *, within: str = "the model directory"
) -> str:
    """Where a symlink or hard link leads, as a path inside `within`; outside is refused."""
    if member.islnk():
        return str(safe_relative(member.linkname, where=where, within=within))
    if member.linkname.startswith("/"):
        raise die(
            f"{where}: symlink '{member.name}' points outside {within} ({member.linkname})",
            exit_code=Exit.CORRUPT,
        )
    joined = os.path.normpath(str(PurePosixPath(path).parent / member.linkname))
    if joined.startswith("..") or joined == ".":
        raise die(
            f"{where}: symlink '{member.name}' escapes {within} ({member.linkname})",
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


def unpack_tree(
    stream: Readable, target: Path, *, where: str, limit: int | None = None
) -> tuple[int, int]:
    """An uploaded file or tree (an uncompressed tar stream) into `target`, a new directory of
    ours: directories, regular files and links that stay inside it; nothing absolute, no
    '..', no devices, and nothing written through a link (symlinks are made last, then each
    is resolved for real); files of at most `limit` bytes in all. Returns the files and
    bytes unpacked."""
    target.mkdir(mode=0o700)
    tree = _Tree(target, where, limit)
    try:
        # "r|": a stream, read once from the start (the body cannot seek).
        archive = tarfile.open(  # noqa: SIM115 - closed below
            fileobj=cast(IO[bytes], stream), mode="r|", bufsize=1 << 20
        )
    except tarfile.TarError as error:
        raise die(
            f"{where}: the upload is not a tar stream ({error})", exit_code=Exit.CORRUPT
        ) from None
    try:
        for member in archive:
            tree.add(archive, member)
    except tarfile.TarError as error:
        raise die(
            f"{where}: the upload is truncated or corrupt ({error})", exit_code=Exit.CORRUPT
        ) from None
    except OSError as error:
        raise die(
            f"{where}: cannot unpack the upload ({error.strerror}: {error.filename})",
            exit_code=Exit.DISK_FULL if error.errno == errno.ENOSPC else Exit.CORRUPT,
        ) from None
    finally:
        archive.close()
    tree.make_symlinks()
    return tree.files, tree.size


class _Tree:
    """An upload being unpacked: what is written, and the symlinks to make at the end."""

    def __init__(self, target: Path, where: str, limit: int | None) -> None:
        self.target, self.where, self.limit = target, where, limit
        self.symlinks: dict[str, str] = {}  # path → its target, as the archive says
        self.files = self.size = 0

    def add(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        where = self.where
        if member.isdir() and not member.name.strip("./"):
            return  # the tree's own root ("./" from `tar -C DIR .`)
        relative = safe_relative(member.name, where=where, within="the upload")
        path = str(relative)
        if any(str(parent) in self.symlinks for parent in (relative, *relative.parents)):
            raise die(
                f"{where}: '{member.name}' would be written through a link",
                exit_code=Exit.CORRUPT,
            )
        destination = self.target / path
        destination.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if member.isdir():
            destination.mkdir(mode=0o700, exist_ok=True)
        elif member.isfile():
            if self.limit is not None and self.size + member.size > self.limit:
                raise die(
                    f"{where}: the upload holds more than the {self.limit} bytes it announced",
                    exit_code=Exit.USAGE,
                )
            reader = archive.extractfile(member)
            assert reader is not None
            _write_new(destination, reader, member, where)
            self.files += 1
            self.size += member.size
        elif member.issym():
            _link_target(path, member, where, within="the upload")
            self.symlinks[path] = member.linkname
        elif member.islnk():
            source = self.target / _link_target(path, member, where, within="the upload")
            if source.is_symlink() or not source.is_file():
                raise die(
                    f"{where}: hard link '{member.name}' to '{member.linkname}', which is no "
                    "file before it",
                    exit_code=Exit.CORRUPT,
                )
            os.link(source, destination)
            self.files += 1
        else:
            raise die(
                f"{where}: '{member.name}' is a device, fifo or other special file",
                hint="upload regular files, directories and links only",
                exit_code=Exit.CORRUPT,
            )

    def make_symlinks(self) -> None:
        """The links, once every file is written; then each resolved as the filesystem does
        (a link through another link can lead out where its text alone stays inside)."""
        try:
            for path, linkname in self.symlinks.items():
                (self.target / path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.symlink(linkname, self.target / path)
        except OSError as error:
            raise die(
                f"{self.where}: cannot make the link '{error.filename}' ({error.strerror})",
                exit_code=Exit.CORRUPT,
            ) from None
        root = self.target.resolve()
        for path, linkname in self.symlinks.items():
            if not (self.target / path).resolve().is_relative_to(root):
                raise die(
                    f"{self.where}: link '{path}' leads outside the upload ({linkname})",
                    exit_code=Exit.CORRUPT,
                )


def _write_new(destination: Path, reader: Readable, member: tarfile.TarInfo, where: str) -> None:
    """A new file (never an existing one, never through a link), executable if it was."""
    mode = 0o700 if member.mode & 0o111 else 0o600
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    written = 0
    with os.fdopen(os.open(destination, flags, mode), "wb") as writer:
        while block := reader.read(1 << 20):
            writer.write(block)
            written += len(block)
    if written != member.size:
        raise die(
            f"{where}: '{member.name}' ends early ({written} of {member.size} bytes)",
            exit_code=Exit.CORRUPT,
        )
