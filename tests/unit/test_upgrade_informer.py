"""The upgrade informer: `bootc upgrade --check` read into /var/lib/bootlab/upgrade.json and
the login banner. bootc cannot run outside a bootc-booted host, so a stand-in prints what
bootc prints there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bootlab import upgrade
from bootlab.paths import Paths

pytestmark = pytest.mark.unit

CURRENT = "No changes in: ostree-unverified-registry:quay.io/bootlab/bootlab:latest\n"
AVAILABLE = (
    "Update available for: docker://quay.io/bootlab/bootlab:latest\n"
    "  Version: 0.2.0\n"
    "  Digest: sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945\n"
)


def with_bootc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stdout: str, code: int) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "bootc").write_text(f"#!/bin/sh\nprintf %s '{stdout}'\nexit {code}\n")
    (tools / "bootc").chmod(0o755)
    monkeypatch.setenv("PATH", str(tools))


def test_update_available_reaches_status_and_motd(monkeypatch, tmp_path: Path) -> None:
    paths = Paths(tmp_path / "root")
    with_bootc(monkeypatch, tmp_path, AVAILABLE, 0)
    status = upgrade.check(paths)
    assert status.available is True
    assert status.message.startswith("Update available for: docker://quay.io/bootlab/bootlab")
    assert json.loads(paths.upgrade_status.read_text())["available"] is True
    assert upgrade.last(paths) == status
    assert "bootc upgrade" in paths.motd.read_text()


def test_up_to_date_clears_the_banner(monkeypatch, tmp_path: Path) -> None:
    paths = Paths(tmp_path / "root")
    paths.motd.parent.mkdir(parents=True)
    paths.motd.write_text("old banner\n")
    with_bootc(monkeypatch, tmp_path, CURRENT, 0)
    status = upgrade.check(paths)
    assert (status.available, status.message) == (False, CURRENT.strip())
    assert not paths.motd.exists()


def test_failed_check_is_recorded_not_raised(monkeypatch, tmp_path: Path) -> None:
    paths = Paths(tmp_path / "root")
    with_bootc(monkeypatch, tmp_path, "error: Upgrading: Creating importer: failed\n", 1)
    status = upgrade.check(paths)
    assert status.available is None and "exit 1" in status.message


def test_missing_bootc_is_recorded(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    status = upgrade.check(Paths(tmp_path / "root"))
    assert status.available is None and "'bootc' is not installed" in status.message
