"""The vm tier's machine: the dev image as a real VM under qemu (a real kernel, systemd as
the real PID 1, the units' sandbox in force, reboots), reached over SSH on a forward bound to
127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from image.cache import cache_dir, key_of
from image.disk import Disk
from image.vm import Forward, Machine, Running, boot, free_port, serial_tail, ssh_argv
from tests.support.infra import REPO_ROOT, build_py, dev_image, podman_env, require_tools  # noqa: F401

BOOT_TIMEOUT_S = float(os.environ.get("BOOTLAB_VM_BOOT_TIMEOUT_S", "600"))


@dataclass
class Guest:
    """A booted VM: commands over SSH, reboots, and where its console goes."""

    running: Running
    ssh_port: int
    identity: Path
    boots: list[str] = field(default_factory=list)

    def ssh(
        self,
        command: str,
        *,
        user: str = "root",
        input_text: str | None = None,
        check: bool = True,
        timeout: float = 900,
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command in the guest as `user` (root logs in; others through runuser,
        a real login session of that user)."""
        remote = command if user == "root" else f"runuser -l {user} -c {_quote(command)}"
        result = subprocess.run(
            [*ssh_argv(self.ssh_port, self.identity), remote],
            input=input_text,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"in the VM, {command!r} as {user} failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def put(self, source: Path, target: str) -> None:
        """Copy a file or directory tree from here to `target` in the guest (tar over SSH)."""
        parent, name = (source, ".") if source.is_dir() else (source.parent, source.name)
        packed = subprocess.run(
            ["tar", "-C", str(parent), "-c", name], capture_output=True, check=True
        ).stdout
        unpack = (
            f"mkdir -p {target} && tar -x -C {target}"
            if source.is_dir()
            else f"mkdir -p $(dirname {target}) && tar -x -O > {target}"
        )
        result = subprocess.run(
            [*ssh_argv(self.ssh_port, self.identity), unpack],
            input=packed,
            capture_output=True,
            check=False,
            timeout=600,
        )
        if result.returncode != 0:
            pytest.fail(f"copying {source} to the VM failed: {result.stderr.decode()[-2000:]}")

    def wait_for(self, what: str, command: str, timeout: float = 900) -> str:
        """Until `command` succeeds in the guest; its output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.ssh(command, check=False)
            if result.returncode == 0:
                return result.stdout
            time.sleep(2)
        pytest.fail(f"timed out waiting for {what} in the VM:\n{serial_tail(self.running.serial)}")

    def boot_id(self) -> str:
        return self.ssh("cat /proc/sys/kernel/random/boot_id").stdout.strip()

    def wait_booted(self) -> None:
        """Until SSH answers and systemd says the boot is over."""
        self.running.wait_for_port(22, BOOT_TIMEOUT_S, "SSH")
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            state = self.ssh(
                "systemctl is-system-running --wait", check=False, timeout=BOOT_TIMEOUT_S
            )
            if state.stdout.strip() in ("running", "degraded"):
                self.boots.append(self.boot_id())
                return
            time.sleep(2)
        pytest.fail(f"the VM did not finish booting:\n{serial_tail(self.running.serial)}")

    def reboot(self) -> None:
        """`systemctl reboot` in the guest, then wait for the next boot (a new boot_id)."""
        before = self.boot_id()
        self.ssh("systemctl reboot", check=False, timeout=60)
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            time.sleep(3)
            probe = subprocess.run(
                [*ssh_argv(self.ssh_port, self.identity), "cat /proc/sys/kernel/random/boot_id"],
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            )
            if probe.returncode == 0 and probe.stdout.strip() not in ("", before):
                self.wait_booted()
                return
        pytest.fail(f"the VM did not come back after reboot:\n{serial_tail(self.running.serial)}")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@pytest.fixture(scope="session")
def vm_disk(dev_image: str) -> tuple[Path, Path]:  # noqa: F811 - the fixture
    """The dev image as a raw disk with a test key for root, cached by image id (making it
    takes a minute; the VM boots it with snapshot=on, so the disk itself never changes)."""
    require_tools("qemu-system-x86_64", "mkfs.ext4", "ssh", "ssh-keygen")
    image_id = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Id}}", dev_image],
        capture_output=True,
        text=True,
        check=True,
        env=podman_env(),
    ).stdout.strip()
    root = cache_dir() / "vm"
    identity = root / "id_ed25519"
    if not identity.exists():
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "bootlab-vm-tests",
                "-f",
                identity,
            ],
            check=True,
        )
    directory = root / key_of(image_id, identity.with_suffix(".pub").read_text())
    try:
        if Disk.read(directory).image_id == image_id:
            return directory, identity
    except Exception:  # noqa: S110 - no disk yet, or a broken one: make it again
        pass
    result = build_py(
        "disk",
        "--profile",
        "dev",
        "--type",
        "raw",
        "--image",
        dev_image,
        "--output",
        str(directory),
        "--ssh-key",
        str(identity.with_suffix(".pub")),
    )
    assert result.returncode == 0, f"disk failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    return directory, identity


@pytest.fixture(scope="session")
def guest(vm_disk: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    """The dev image booted as a VM, shared by the vm tier (writes go to an overlay)."""
    directory, identity = vm_disk
    port = free_port()
    machine = Machine(memory_mib=6144, cpus=2, forwards=(Forward(port, 22),), snapshot=True)
    serial = tmp_path_factory.mktemp("vm") / "serial.log"
    with boot(directory, machine, serial) as running:
        booted = Guest(running, port, identity)
        booted.wait_booted()
        yield booted
        # The console of the whole session, for whoever reads a failure later.
        artifacts = REPO_ROOT / "output" / "test-artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        (artifacts / "vm-serial.log").write_bytes(serial.read_bytes())
