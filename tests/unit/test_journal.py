"""bootlab.journal without systemd-python (an image whose Python has no build of it): the
plain sd_notify datagram and priority-prefixed lines that journald understands."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
from bootlab import journal

pytestmark = pytest.mark.unit


def test_notify_falls_back_to_the_notify_socket(monkeypatch, tmp_path: Path) -> None:
    address = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(address))
        monkeypatch.setattr(journal, "_daemon", None)
        monkeypatch.setenv("NOTIFY_SOCKET", str(address))
        journal.notify("READY=1\nSTATUS=answering")
        assert receiver.recv(4096) == b"READY=1\nSTATUS=answering"


def test_notify_without_systemd_does_nothing(monkeypatch) -> None:
    monkeypatch.setattr(journal, "_daemon", None)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    journal.notify("READY=1")  # no socket, no error


def test_log_lines_carry_syslog_priorities_under_systemd(monkeypatch, capsys) -> None:
    monkeypatch.setattr(journal, "_journal", None)
    monkeypatch.setenv("INVOCATION_ID", "0123")
    journal.setup_logging("bootlabd")
    logger = logging.getLogger("bootlabd.test")
    logger.error("broken")
    logger.info("fine")
    assert capsys.readouterr().err.splitlines() == ["<3>broken", "<6>fine"]
    logging.getLogger().handlers.clear()
