"""The units' sandbox is in force on a real host: read back from the running processes
(/proc/PID/status, /proc/PID/mountinfo) and from systemd's own security analysis. In the
container tier systemd cannot apply most of it, so only a VM can show this."""

from __future__ import annotations

import re

import pytest

from tests.support.vm import Guest

pytestmark = pytest.mark.vm

EMPTY_CAPS = "0000000000000000"


def _main_pid(guest: Guest, unit: str) -> int:
    pid = int(guest.ssh(f"systemctl show -p MainPID --value {unit}").stdout.strip())
    assert pid > 0, f"{unit} is not running"
    return pid


def _status(guest: Guest, pid: int) -> dict[str, str]:
    text = guest.ssh(f"cat /proc/{pid}/status").stdout
    return {
        key: value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())
    }


def _effective(mounts: dict[str, set[str]], path: str) -> set[str]:
    """The options of the mount `path` lies on (the longest mount point above it): with
    ProtectSystem=strict, /home needs no mount of its own to be read-only."""
    best = max(
        (point for point in mounts if path == point or path.startswith(point.rstrip("/") + "/")),
        key=len,
    )
    return mounts[best]


def _mounts(guest: Guest, pid: int) -> dict[str, set[str]]:
    """Mount point -> its per-mount options, as the process sees its mount namespace."""
    mounts: dict[str, set[str]] = {}
    for line in guest.ssh(f"cat /proc/{pid}/mountinfo").stdout.splitlines():
        fields = line.split()
        mounts[fields[4]] = set(fields[5].split(","))
    return mounts


def test_bootlabd_runs_without_capabilities_on_a_read_only_system(guest: Guest) -> None:
    guest.ssh("bootlab status")  # the socket starts the daemon
    pid = _main_pid(guest, "bootlabd.service")
    status = _status(guest, pid)
    assert status["Uid"].split()[0] == "0"  # root, but ...
    assert status["CapBnd"] == EMPTY_CAPS  # ... with no capability at all
    assert status["CapEff"] == EMPTY_CAPS
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"  # RestrictAddressFamilies=, SystemCallArchitectures=
    mounts = _mounts(guest, pid)
    assert "ro" in mounts["/"], "ProtectSystem=strict: / is read-only to bootlabd"
    assert "ro" in _effective(mounts, "/home"), "ProtectHome=read-only"
    assert "ro" in _effective(mounts, "/usr")
    assert "rw" in _effective(mounts, "/var/lib/bootlab")
    assert "rw" in _effective(mounts, "/etc/bootlab")
    # What the daemon sees of /home refuses writes, whoever writes (EROFS, not a permission).
    refused = guest.ssh(f"nsenter -t {pid} -m touch /home/.bootlab-probe", check=False)
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr, refused
    # PrivateTmp=: its /tmp is not the host's.
    host_tmp = guest.ssh("stat -c %d:%i /tmp").stdout.strip()
    assert guest.ssh(f"nsenter -t {pid} -m stat -c %d:%i /tmp").stdout.strip() != host_tmp


@pytest.mark.parametrize(("unit", "limit"), [("bootlabd.service", 4.0)])
def test_systemd_rates_the_running_unit_within_its_exposure_budget(
    guest: Guest, unit: str, limit: float
) -> None:
    guest.ssh("bootlab status")
    analysis = guest.ssh(f"systemd-analyze security --no-pager {unit}", check=False)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", analysis.stdout)
    assert found, analysis.stdout[-2000:] + analysis.stderr
    assert float(found.group(1)) <= limit, analysis.stdout


def test_the_vm_is_a_real_host_not_a_container(guest: Guest) -> None:
    """What the container tier cannot give: systemd is PID 1 of a real kernel, no container
    manager is detected, and the boot reached multi-user with no failed unit."""
    assert guest.ssh("systemd-detect-virt --container", check=False).stdout.strip() == "none"
    assert guest.ssh("cat /proc/1/comm").stdout.strip() == "systemd"
    assert guest.ssh("systemctl --failed --no-legend --plain").stdout.strip() == ""
