"""The shipped unit files: what must hold however they are edited (the golden files in
tests/golden/<profile>/units.txt pin their exact text)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

UNITS = Path(__file__).resolve().parents[2] / "units"
LONG_RUNNING = ("bootlabd.service", "bootlab-serve.service", "bootlab-train.service")


def unit(name: str) -> dict[str, dict[str, str]]:
    """Sections of a unit file; a key given twice (After=, ExecStart=) has its values joined
    with spaces, as systemd adds them up for list settings."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in (UNITS / name).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current[key] = f"{current[key]} {value}" if key in current else value
    return sections


def test_serve_and_train_conflict_both_ways_and_are_ordered() -> None:
    serve, train = unit("bootlab-serve.service"), unit("bootlab-train.service")
    assert serve["Unit"]["Conflicts"] == "bootlab-train.service"
    assert train["Unit"]["Conflicts"] == "bootlab-serve.service"
    # Ordering makes systemd finish one stop before the other start.
    orderings = (serve["Unit"].get("After", "") + " " + train["Unit"].get("After", "")).split()
    assert "bootlab-serve.service" in orderings or "bootlab-train.service" in orderings
    for workload in (serve, train):
        service = workload["Service"]
        assert service["Type"] == "notify"
        assert re.fullmatch(r"/usr/bin/bootlab (serve|train) run", service["ExecStart"])
        assert {"75", "78"} <= set(service["RestartPreventExitStatus"].split())
        for device_limiter in ("PrivateDevices", "DeviceAllow", "DevicePolicy", "ProtectClock"):
            assert device_limiter not in service, f"{device_limiter} would hide the GPUs"


def test_socket_is_for_root_and_the_bootlab_group() -> None:
    socket = unit("bootlabd.socket")["Socket"]
    assert socket["ListenStream"] == "/run/bootlab/bootlab.sock"
    assert (socket["SocketUser"], socket["SocketGroup"], socket["SocketMode"]) == (
        "root",
        "bootlab",
        "0660",
    )
    assert "g bootlab" in (UNITS / "sysusers.d" / "bootlab.conf").read_text()


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_are_hardened(name: str) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: run the README's test command")
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=50", name],
        cwd=UNITS,
        capture_output=True,
        text=True,
        check=False,
    )
    exposure = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert exposure, result.stdout + result.stderr
    assert float(exposure.group(1)) <= 5.0, result.stdout
