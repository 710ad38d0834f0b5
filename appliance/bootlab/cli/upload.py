"""Local files for bootlabd, read here with the rights of whoever runs the CLI: a file or a
tree, packed as a tar stream while it is sent (POST /v1/uploads), with progress for big ones.

bootlabd runs as root without capabilities and with ProtectHome=read-only: it cannot enter a
0700 home, and must not read a path for a caller with root's rights anyway. So the CLI reads
(as the user, or as root under sudo) and the daemon unpacks its own copy."""

from __future__ import annotations

import os
import sys
import tarfile
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, Literal, cast

from bootlab import text
from bootlab.cli.calls import send
from bootlab.errors import Exit, die
from bootlab.paths import Paths

if TYPE_CHECKING:
    from bootlab.api import Upload

CHUNK = 1 << 20  # tar's records and the reads of files: fewer calls for big models
SHOWN_FROM = 32 << 20  # smaller uploads take a blink: no progress line for them
REDRAW_S = 0.25
LOG_EVERY_S = 5.0


@dataclass(frozen=True)
class Entry:
    name: str  # in the archive
    path: Path
    kind: Literal["file", "directory", "link"]
    size: int = 0
    executable: bool = False
    link: str = ""  # a link's target, relative to the link's folder


def unreadable(path: Path | str, reason: str = "permission denied") -> Exception:
    return die(
        f"cannot read {path}: {reason}",
        hint="bootlab reads your files with your rights: make them readable to you, or use "
        "sudo for files only root may read",
        exit_code=Exit.NO_PERMISSION if reason == "permission denied" else Exit.USAGE,
    )


def collect(base: Path, only: Sequence[str] | None = None) -> list[Entry]:
    """What to send of `base` (resolved): the file itself, or the tree below it (only the
    paths `only` names, relative to it, when given). Refuses what the caller cannot read,
    links leading out of `base` and special files, before anything is sent."""
    if not base.exists():
        raise unreadable(base, "no such file or directory")
    if base.is_file():
        return [_file(base, base.name)]
    entries: list[Entry] = []
    for relative in only if only is not None else ["."]:
        path = Path(os.path.normpath(base / relative))
        if path == base:
            _walk(base, "", base, entries)
        elif path.is_symlink() or path.exists():
            _add(path, str(path.relative_to(base)), base, entries)
    unique: dict[str, Entry] = {}
    for entry in entries:  # `only` may name a folder and a file in it
        unique.setdefault(entry.name, entry)
    return list(unique.values())


def _walk(directory: Path, prefix: str, base: Path, entries: list[Entry]) -> None:
    try:
        names = sorted(os.listdir(directory))
    except PermissionError:
        raise unreadable(directory) from None
    for name in names:
        _add(directory / name, prefix + name, base, entries)


def _add(path: Path, name: str, base: Path, entries: list[Entry]) -> None:
    if path.is_symlink():
        try:
            target = path.resolve()
        except (OSError, RuntimeError):
            raise unreadable(path, "a link loop") from None
        if not target.is_relative_to(base):
            raise die(
                f"{path} links outside {base}",
                hint="copy the file in instead",
                exit_code=Exit.CORRUPT,
            )
        link = os.path.relpath(target, path.parent)
        entries.append(Entry(name, path, "link", link=link))
    elif path.is_dir():
        entries.append(Entry(name, path, "directory"))
        _walk(path, name + "/", base, entries)
    elif path.is_file():
        entries.append(_file(path, name))
    else:
        raise die(f"{path} is not a regular file", exit_code=Exit.CORRUPT)


def _file(path: Path, name: str) -> Entry:
    if not os.access(path, os.R_OK):
        raise unreadable(path)
    stat = path.stat()
    return Entry(name, path, "file", stat.st_size, bool(stat.st_mode & 0o111))


def upload(
    paths: Paths,
    base: Path,
    *,
    origin: str,
    quiet: bool,
    only: Sequence[str] | None = None,
) -> Upload:
    """Send `base` (or the `only` paths in it); bootlabd answers with the upload's id, which
    the next request names."""
    entries = collect(base, only)
    kind = "file" if base.is_file() else "directory"
    if kind == "file":  # named as the caller named it (a link's name, not its target's)
        entries = [replace(entries[0], name=os.path.basename(origin))]
    total = sum(entry.size for entry in entries)
    query = urllib.parse.urlencode({"origin": origin, "kind": kind, "size": total})
    meter = _Meter(origin, total, quiet=quiet or total < SHOWN_FROM)

    def produce(writer: BinaryIO) -> None:
        _pack(entries, writer, meter)

    reply: Upload = send(paths, f"/v1/uploads?{query}", produce)
    meter.end()
    return reply


def _pack(entries: list[Entry], writer: BinaryIO, meter: _Meter) -> None:
    with tarfile.open(
        fileobj=cast(IO[bytes], writer), mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK
    ) as tar:
        # Files in reads of one record (default 16 KiB: a buffer grown and copied per read);
        # CPython's attribute, not in typeshed.
        tar.copybufsize = CHUNK  # type: ignore[attr-defined]
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.mtime = int(time.time())
            if entry.kind == "directory":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif entry.kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, entry.link
                tar.addfile(info)
            else:
                info.size, info.mode = entry.size, 0o755 if entry.executable else 0o644
                _add_file(tar, info, entry, meter)


def _add_file(tar: tarfile.TarFile, info: tarfile.TarInfo, entry: Entry, meter: _Meter) -> None:
    try:
        handle = entry.path.open("rb")
    except PermissionError:
        raise unreadable(entry.path) from None
    except OSError as error:
        raise unreadable(entry.path, error.strerror or "error") from None
    with handle:
        try:
            tar.addfile(info, _Counted(handle, meter))
        except OSError as error:
            if isinstance(error, (BrokenPipeError, ConnectionResetError)):
                raise  # bootlabd stopped reading: its answer says why
            raise die(
                f"{entry.path} changed while it was read ({error})", exit_code=Exit.ERROR
            ) from None


class _Counted:
    def __init__(self, handle: BinaryIO, meter: _Meter) -> None:
        self._handle, self._meter = handle, meter

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self._meter.add(len(data))
        return data


class _Meter:
    """Bytes sent so far, on stderr: redrawn on a terminal, a line now and then elsewhere."""

    def __init__(self, origin: str, total: int, *, quiet: bool) -> None:
        self.origin, self.total, self.quiet = origin, total, quiet
        self.sent = 0
        self.interactive = sys.stderr.isatty()
        self.last = time.monotonic()

    def add(self, size: int) -> None:
        self.sent += size
        now = time.monotonic()
        if self.quiet or now - self.last < (REDRAW_S if self.interactive else LOG_EVERY_S):
            return
        self.last = now
        if self.interactive:
            print("\r" + self.line(), end="", file=sys.stderr, flush=True)
        else:
            print(self.line(), file=sys.stderr, flush=True)

    def line(self) -> str:
        return f"uploading {self.origin}: {text.size(self.sent)} of {text.size(self.total)}"

    def end(self) -> None:
        if not self.quiet and self.interactive:
            print("\r" + self.line(), file=sys.stderr)
