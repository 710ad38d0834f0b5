"""The one error type bootlab raises on purpose (what went wrong, and how to fix it), and the
one table of exit codes every command, entrypoint and route uses."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from enum import IntEnum


class Exit(IntEnum):
    """Every exit code bootlab gives, with what it means and the HTTP status bootlabd answers
    for it. The README's table, the units' `RestartPreventExitStatus=` and the daemon's status
    map are all checked against this enum (tests/unit/test_exit_codes.py).

    Codes 1-8 are bootlab's own; 65-78 follow sysexits(3), so systemd and shells read them
    the way they read any daemon's; 127 and 130 are the shell's (command not found, SIGINT)."""

    meaning: str
    http: int

    def __new__(cls, code: int, meaning: str, http: int) -> Exit:
        member = int.__new__(cls, code)
        member._value_ = code
        member.meaning = meaning
        member.http = http
        return member

    OK = 0, "ok", 200
    ERROR = 1, "error", 422
    USAGE = 2, "usage or bad input", 400
    CONFLICT = 3, "conflict (already exists or failed to start)", 409
    CREDENTIALS = 4, "credentials refused", 403
    UNREACHABLE = 5, "registry unreachable or TLS", 502
    NOT_FOUND = 6, "not found", 422
    CORRUPT = 7, "corrupt or unsafe content", 422
    DISK_FULL = 8, "disk full", 422
    DATA = 65, "invalid training data or taxonomy", 422
    UNAVAILABLE = 69, "daemon not running", 422
    SOFTWARE = 70, "internal error", 500
    GPU_BUSY = 75, "GPUs in use", 409
    NO_PERMISSION = 77, "permission denied", 403
    NOT_CONFIGURED = 78, "not configured", 409
    NOT_INSTALLED = 127, "command not found", 422
    INTERRUPTED = 130, "interrupted", 422

    @classmethod
    def http_for(cls, code: int) -> int:
        """The HTTP status for an error's code; a code bootlab does not name (a child's own)
        is a plain error."""
        member = cls._value2member_map_.get(code)
        return member.http if isinstance(member, Exit) else cls.ERROR.http


# A refusal of the serve/train entrypoints that restarting cannot cure: the units list these
# in RestartPreventExitStatus= (a test holds the unit files to it).
NO_RESTART = {
    "bootlab-serve.service": (Exit.GPU_BUSY, Exit.NOT_CONFIGURED),
    "bootlab-train.service": (Exit.DATA, Exit.GPU_BUSY, Exit.NOT_CONFIGURED),
}


class BootlabError(Exception):
    """A failure the user can act on; rendered once, without a traceback, by the CLIs."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = Exit.ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def render(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


def die(message: str, hint: str | None = None, exit_code: int = Exit.ERROR) -> BootlabError:
    """Build the error to raise: `raise die("...", hint="...")` reads as one sentence."""
    return BootlabError(message, hint, exit_code)


def reported(command: Callable[[], int], *, bugs: bool = False) -> int:
    """Run a program's command and return its exit code: a BootlabError is its message (and
    hint) on stderr with its code, Ctrl-C is "interrupted". With `bugs`, any other exception
    is one line saying it is a bootlab bug (BOOTLAB_DEBUG=1 shows the traceback)."""
    try:
        return command()
    except BootlabError as error:
        print(error.render(), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return Exit.INTERRUPTED
    except Exception as error:
        if not bugs or os.environ.get("BOOTLAB_DEBUG"):
            raise
        print(
            f"internal error: {error.__class__.__name__}: {error}\n"
            "  hint: this is a bootlab bug; rerun with BOOTLAB_DEBUG=1 and report the "
            "traceback",
            file=sys.stderr,
        )
        return Exit.SOFTWARE
