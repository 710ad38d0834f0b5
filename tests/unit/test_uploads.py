"""Uploads: the daemon's chunked body reader, the tar unpacking that keeps every path and link
inside the staging directory, the size cap, and the upload route of a real bootlabd (a
hostile tar refused with nothing left behind; a refusal mid-stream read by the client)."""

from __future__ import annotations

import io
import json
import os
import socket
import tarfile
import urllib.parse
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from bootlab import client
from bootlab.daemon.body import Body, BodyError
from bootlab.errors import BootlabError, Exit
from bootlab.uploads import Uploads

from tests.support.appliance_daemon import Daemon, running_daemon

pytestmark = pytest.mark.unit


# The chunked reader ------------------------------------------------------------------------


def chunked(*parts: bytes, trailer: bytes = b"") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n" + trailer + b"\r\n"


def body_of(raw: bytes, limit: int | None = None, **headers: str) -> Body:
    message = Message()
    for name, value in (headers or {"Transfer-Encoding": "chunked"}).items():
        message[name.replace("_", "-")] = value
    return Body.of(message, io.BufferedReader(io.BytesIO(raw)), limit=limit)  # type: ignore[arg-type]


def test_chunked_bodies_read_whole_in_any_read_sizes() -> None:
    raw = chunked(b"hello ", b"chunked ", b"world") + b"NEXT REQUEST"
    for size in (1, 3, 7, 1 << 20):
        body = body_of(raw)
        parts = []
        while data := body.read(size):
            parts.append(data)
        assert b"".join(parts) == b"hello chunked world" and body.finished
    with_extras = b"5;name=value\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n"
    assert body_of(with_extras).read() == b"hello"


def test_content_length_bodies_and_the_limit() -> None:
    body = body_of(b"abcdefNEXT", Content_Length="6")
    assert body.read() == b"abcdef" and body.finished
    with pytest.raises(BodyError) as big:
        body_of(b"x" * 10, limit=5, Content_Length="10")
    assert big.value.status == 413
    with pytest.raises(BodyError) as big_chunks:
        body_of(chunked(b"abc", b"def"), limit=5).read()
    assert big_chunks.value.status == 413


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"zz\r\nhello\r\n0\r\n\r\n", "not a hexadecimal number"),
        (b"-5\r\nhello\r\n0\r\n\r\n", "not a hexadecimal number"),
        (b"5\r\nhelloXX0\r\n\r\n", "does not end with CRLF"),
        (b"10\r\nshort", "ends early"),
        (b"5\r\nhello\r\n", "ends early"),
        (b"1" * 5000, "too long"),
    ],
)
def test_broken_chunked_bodies_are_refused(raw: bytes, fragment: str) -> None:
    with pytest.raises(BodyError) as broken:
        body_of(raw).read()
    assert broken.value.status == 400 and fragment in broken.value.message


def test_other_transfer_encodings_are_refused() -> None:
    with pytest.raises(BodyError) as refused:
        body_of(b"", Transfer_Encoding="gzip")
    assert refused.value.status == 501


# Unpacking ---------------------------------------------------------------------------------


def member(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"x", link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buffer.getvalue()


def receive(uploads: Uploads, raw: bytes, **options: Any) -> Any:
    settings: dict[str, Any] = {"uid": 0, "origin": "/home/a/tree", "kind": "directory"}
    settings |= {"declared": None, "limit": 1 << 30} | options
    return uploads.receive(io.BytesIO(raw), **settings)


HOSTILE = [
    ([member("../escape")], "outside the upload"),
    ([member("/etc/passwd")], "outside the upload"),
    ([member("a/../../escape")], "outside the upload"),
    ([member("dev", tarfile.CHRTYPE)], "device, fifo or other special file"),
    ([member("fifo", tarfile.FIFOTYPE)], "device, fifo or other special file"),
    ([member("l", tarfile.SYMTYPE, link="/etc/passwd")], "points outside the upload"),
    ([member("d/l", tarfile.SYMTYPE, link="../../etc")], "escapes the upload"),
    # Written through a link made earlier in the archive.
    ([member("l", tarfile.SYMTYPE, link="sub"), member("l/x")], "written through a link"),
    # Each link's text stays inside; resolved through the first, the second leads out.
    (
        [
            member("a/q", tarfile.SYMTYPE, link="../r"),
            member("a/p", tarfile.SYMTYPE, link="q/../../z"),
        ],
        "leads outside the upload",
    ),
    ([member("h", tarfile.LNKTYPE, link="../outside")], "outside the upload"),
    ([member("h", tarfile.LNKTYPE, link="nothing-yet")], "no file before it"),
    ([member("twice"), member("twice")], "File exists"),
]


@pytest.mark.parametrize(("members", "fragment"), HOSTILE, ids=[f for _, f in HOSTILE])
def test_hostile_tars_are_refused_and_leave_nothing(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]], fragment: str
) -> None:
    uploads = Uploads(tmp_path / "state" / "uploads")
    with pytest.raises(BootlabError) as refused:
        receive(uploads, tar_of(*members))
    assert refused.value.exit_code == Exit.CORRUPT and fragment in refused.value.message
    assert list(uploads.root.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]  # nothing escaped


def test_a_tree_unpacks_with_folders_links_and_modes(tmp_path: Path) -> None:
    uploads = Uploads(tmp_path / "uploads")
    script = member("bin/run", data=b"#!/bin/sh\n")
    script[0].mode = 0o755
    staged = receive(
        uploads,
        tar_of(
            member("./", tarfile.DIRTYPE),
            member("docs", tarfile.DIRTYPE),
            member("docs/a.md", data=b"alpha"),
            member("docs/same.md", tarfile.LNKTYPE, link="docs/a.md"),
            member("latest", tarfile.SYMTYPE, link="docs/a.md"),
            script,
        ),
    )
    root = staged.path
    assert (root / "latest").read_bytes() == b"alpha" and (root / "latest").is_symlink()
    assert (root / "docs/same.md").read_bytes() == b"alpha"
    assert os.stat(root / "bin/run").st_mode & 0o777 == 0o700
    assert os.stat(root / "docs/a.md").st_mode & 0o777 == 0o600
    assert (staged.files, staged.size) == (3, 15)


def test_the_size_cap_refuses_up_front_and_while_streaming(tmp_path: Path) -> None:
    uploads = Uploads(tmp_path / "uploads")
    with pytest.raises(BootlabError) as declared:
        receive(uploads, b"", declared=10 << 20, limit=1 << 20)
    assert declared.value.exit_code == Exit.DISK_FULL and "does not fit" in declared.value.message
    big = tar_of(member("big.bin", data=os.urandom(2 << 20)))
    with pytest.raises(BootlabError) as streamed:
        receive(uploads, big, limit=1 << 20)
    assert streamed.value.exit_code == Exit.DISK_FULL
    with pytest.raises(BootlabError) as lied:
        receive(uploads, big, declared=100)
    assert lied.value.exit_code == Exit.USAGE and "more than the 100 bytes" in lied.value.message
    assert list(uploads.root.iterdir()) == []


def test_a_claim_is_the_uploaders_once_and_of_its_kind(tmp_path: Path) -> None:
    uploads = Uploads(tmp_path / "uploads")
    staged = receive(uploads, tar_of(member("x.jsonl")), origin="/home/a/x.jsonl", kind="file")
    assert staged.path.read_bytes() == b"x"
    for uid, kind, code in ((1000, None, Exit.NOT_FOUND), (0, "directory", Exit.USAGE)):
        with pytest.raises(BootlabError) as refused:
            uploads.claim(staged.id, uid, kind)
        assert refused.value.exit_code == code
    staged.claimed = False  # the refused kind left it claimed: an upload serves one request
    claimed = uploads.claim(staged.id, 0, "file")
    with pytest.raises(BootlabError) as failed, uploads.used(claimed):
        raise BootlabError(f"{claimed.path}:1: not valid JSON")
    assert failed.value.message == "/home/a/x.jsonl:1: not valid JSON"  # the user's path
    assert not staged.directory.exists()
    with pytest.raises(BootlabError):
        uploads.claim(staged.id, 0)
    two = tar_of(member("a"), member("b"))
    with pytest.raises(BootlabError) as not_one:
        receive(uploads, two, origin="/home/a/a", kind="file")
    assert "that one file" in not_one.value.message


def test_sweep_removes_unused_and_left_over_uploads(tmp_path: Path) -> None:
    uploads = Uploads(tmp_path / "uploads")
    unused = receive(uploads, tar_of(member("a", data=b"12345")))
    in_use = uploads.claim(receive(uploads, tar_of(member("b"))).id, 0)
    leftover = uploads.root / "0123456789abcdef"
    (leftover / "content").mkdir(parents=True)
    os.utime(leftover, (0, 0))
    assert uploads.sweep() == (1, 0)  # only the crash's leftover is old enough
    assert uploads.sweep(older_than_s=0) == (1, 5)
    assert not unused.directory.exists() and in_use.directory.exists()


# The route, through a real daemon ----------------------------------------------------------


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    with running_daemon() as running:
        yield running


def upload(daemon: Daemon, produce: Callable[[BinaryIO], None], **query: Any) -> dict[str, Any]:
    options = {"origin": "/home/a/tree", "kind": "directory"} | query
    target = "/v1/uploads?" + urllib.parse.urlencode(options)
    answer: dict[str, Any] = client.send_stream(daemon.socket, target, produce)
    return answer


def test_upload_route_stages_and_import_uses_it(daemon: Daemon) -> None:
    line = json.dumps(
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    )
    raw = tar_of(member("notes.jsonl", data=(line + "\n").encode()))
    sent = upload(daemon, lambda w: w.write(raw), origin="/home/a/notes.jsonl", kind="file")
    assert sent["files"] == 1 and sent["origin"] == "/home/a/notes.jsonl"
    staging = daemon.root / "var/lib/bootlab/uploads"
    assert (staging / sent["id"]).is_dir()
    made = client.call(daemon.socket, "POST", "/v1/datasets/import", {"upload": sent["id"]})
    assert made["name"] == "notes" and made["source"] == "/home/a/notes.jsonl"
    assert not (staging / sent["id"]).exists()  # used, then removed
    with pytest.raises(BootlabError) as again:
        client.call(daemon.socket, "POST", "/v1/datasets/import", {"upload": sent["id"]})
    assert again.value.exit_code == Exit.NOT_FOUND


def test_upload_route_refuses_a_hostile_tar_with_nothing_left(daemon: Daemon) -> None:
    staging = daemon.root / "var/lib/bootlab/uploads"
    before = set(staging.iterdir()) if staging.exists() else set()
    raw = tar_of(member("ok"), member("l", tarfile.SYMTYPE, link="../../../etc/shadow"))
    with pytest.raises(BootlabError) as refused:
        upload(daemon, lambda w: w.write(raw))
    assert refused.value.exit_code == Exit.CORRUPT and "escapes the upload" in refused.value.message
    assert set(staging.iterdir()) == before


def test_a_refusal_mid_stream_reaches_the_client(daemon: Daemon) -> None:
    """The daemon stops reading once the upload holds more than it said; the client, still
    sending, reads the answer instead of a broken pipe."""

    def produce(writer: BinaryIO) -> None:
        with tarfile.open(fileobj=writer, mode="w|") as archive:  # type: ignore[call-overload]
            info = tarfile.TarInfo("huge.bin")
            info.size = 64 << 20
            archive.addfile(info, io.BytesIO(bytes(info.size)))

    with pytest.raises(BootlabError) as refused:
        upload(daemon, produce, size=1000)
    assert refused.value.exit_code == Exit.USAGE and "more than the 1000" in refused.value.message


def test_raw_uploads_with_bad_query_or_body_get_clear_errors(daemon: Daemon) -> None:
    def ask(request: bytes) -> tuple[int, dict[str, Any]]:
        with socket.socket(socket.AF_UNIX) as connection:
            connection.connect(str(daemon.socket))
            connection.sendall(request)
            connection.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := connection.recv(65536):
                data += chunk
        return int(data.split(b" ", 2)[1]), json.loads(data.partition(b"\r\n\r\n")[2])

    status, answer = ask(b"POST /v1/uploads?kind=file HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert status == 422 and "origin" in answer["error"]
    query = urllib.parse.urlencode({"origin": "/x", "kind": "directory"}).encode()
    status, answer = ask(
        b"POST /v1/uploads?%s HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" % query
    )
    assert status == 400 and "hexadecimal" in answer["error"]
    status, answer = ask(
        b"POST /v1/auth/logout HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked(b'{"registry":', b' "quay.io"}')
    )
    assert status == 200 and answer["registry"] == "quay.io"  # JSON may come chunked too


def test_a_restarted_daemon_starts_with_no_uploads(tmp_path: Path) -> None:
    left = tmp_path / "var/lib/bootlab/uploads/0123456789abcdef/content"
    left.mkdir(parents=True)
    (left / "half.bin").write_bytes(b"x" * 100)
    with running_daemon(root=tmp_path):
        assert not left.parent.exists()
