"""Request bodies as bootlabd reads them off the socket: a Content-Length body or a chunked
one (HTTP/1.1 `Transfer-Encoding: chunked`, which uploads use: the CLI packs a tree while
sending it and knows no length up front), read as a stream, never longer than allowed."""

from __future__ import annotations

import io
from email.message import Message

MAX_LINE = 1024  # a chunk's size line or a trailer: a few bytes in practice


class BodyError(Exception):
    """The body breaks HTTP (a bad chunk, a connection cut short) or exceeds the limit."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Body:
    """The body of one request, read like a file: `read(n)` returns at most n bytes, b"" at
    its end. `limit` caps what may be read (None: the caller counts)."""

    def __init__(self, stream: io.BufferedIOBase, *, length: int | None, limit: int | None) -> None:
        self._stream = stream
        self._chunked = length is None
        self._left = 0 if length is None else length  # of the current chunk, or the body
        self._limit = limit
        self._finished = length == 0
        self.read_bytes = 0
        if length is not None and limit is not None and length > limit:
            raise BodyError(413, f"the body must be at most {limit} bytes")

    @classmethod
    def of(cls, headers: Message, stream: io.BufferedIOBase, *, limit: int | None) -> Body:
        """The body the headers announce: chunked, a length, or none."""
        encoding = (headers.get("Transfer-Encoding") or "").strip().lower()
        if encoding == "chunked":
            return cls(stream, length=None, limit=limit)
        if encoding:
            raise BodyError(501, f"Transfer-Encoding '{encoding}' is not supported; use chunked")
        try:
            length = int(headers.get("Content-Length") or 0)
        except ValueError:
            raise BodyError(400, "Content-Length is not a number") from None
        if length < 0:
            raise BodyError(400, "Content-Length is not a number")
        return cls(stream, length=length, limit=limit)

    @property
    def finished(self) -> bool:
        """Whether the body was read to its end (else the connection cannot serve another
        request: what is left of the body would be read as one)."""
        return self._finished

    def read(self, size: int = -1) -> bytes:
        parts = []
        while not self._finished and (size < 0 or size > 0):
            if self._left == 0:
                self._next_chunk()
                continue
            want = self._left if size < 0 else min(size, self._left)
            data = self._stream.read(want)
            if not data:
                raise BodyError(400, "the request body ends early (connection closed)")
            self._count(len(data))
            self._left -= len(data)
            parts.append(data)
            if size > 0:
                size -= len(data)
            if self._left == 0:
                if self._chunked:
                    self._expect_crlf()
                else:
                    self._finished = True
        return b"".join(parts)

    def readall(self) -> bytes:
        return self.read(-1)

    def _count(self, size: int) -> None:
        self.read_bytes += size
        if self._limit is not None and self.read_bytes > self._limit:
            raise BodyError(413, f"the body must be at most {self._limit} bytes")

    def _next_chunk(self) -> None:
        line = self._line()
        text = line.split(b";", 1)[0].strip()  # chunk extensions are allowed, and ignored
        try:
            size = int(text, 16)
        except ValueError:
            raise BodyError(400, "a chunk's size is not a hexadecimal number") from None
        if size < 0 or text.startswith((b"-", b"+", b"0x", b"0X")):
            raise BodyError(400, "a chunk's size is not a hexadecimal number")
        if size == 0:
            while self._line():  # trailers, up to the empty line that ends the body
                pass
            self._finished = True
            return
        self._left = size

    def _expect_crlf(self) -> None:
        if self._stream.read(2) != b"\r\n":
            raise BodyError(400, "a chunk does not end with CRLF")

    def _line(self) -> bytes:
        line = self._stream.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise BodyError(400, "a chunk header line is too long")
        if not line.endswith(b"\n"):
            raise BodyError(400, "the request body ends early (connection closed)")
        return line.rstrip(b"\r\n")
