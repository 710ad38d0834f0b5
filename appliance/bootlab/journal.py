"""Talking to systemd: structured journal logging and sd_notify, through systemd-python.

Where systemd-python is not installed (an image whose Python has no build of it) the same
calls fall back to the plain protocols: priority-prefixed stderr lines, which journald
parses, and a datagram to $NOTIFY_SOCKET."""

from __future__ import annotations

import logging
import os
import socket
import sys

try:
    from systemd import daemon as _daemon
    from systemd import journal as _journal
except ImportError:  # pragma: no cover - depends on the image
    _daemon = None
    _journal = None


_SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3}


class _PriorityPrefix(logging.Formatter):
    """`<3>message`: journald reads the syslog priority from the prefix (SyslogLevelPrefix)."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, 2)
        return f"<{priority}>{super().format(record)}"


def setup_logging(identifier: str, level: int = logging.INFO) -> None:
    """Log to the journal with structured fields when running under systemd, else stderr."""
    root = logging.getLogger()
    root.setLevel(level)
    under_systemd = bool(os.environ.get("INVOCATION_ID") or os.environ.get("JOURNAL_STREAM"))
    handler: logging.Handler
    if under_systemd and _journal is not None:
        handler = _journal.JournalHandler(SYSLOG_IDENTIFIER=identifier)
    elif under_systemd:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_PriorityPrefix("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{identifier}: %(levelname)s %(message)s"))
    root.handlers[:] = [handler]


def notify(state: str) -> None:
    """Tell systemd about readiness or status (`READY=1`, `STATUS=...`); no-op elsewhere."""
    if _daemon is not None:
        _daemon.notify(state)
        return
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sender:
        sender.sendto(state.encode(), address)
