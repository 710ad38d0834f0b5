"""Boot a disk made by `build.py disk` under qemu: the image's kernel with a serial console,
user networking that reaches nothing (`restrict=on`) but forwards bound to 127.0.0.1, and KVM
only where a probe boot shows it works (nested KVM fails on some hosts; TCG always works)."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bootlab.errors import Exit, die
from bootlab.run import require, spawn

from image.disk import Disk
from image.log import log

QEMU = "qemu-system-x86_64"
PROBE_S = 30


@dataclass(frozen=True)
class Forward:
    """A host port on 127.0.0.1 forwarded to a guest port."""

    host: int
    guest: int

    @classmethod
    def parse(cls, text: str) -> Forward:
        host, _, guest = text.partition(":")
        if not (host.isdigit() and guest.isdigit()) or not (
            0 < int(host) < 65536 and 0 < int(guest) < 65536
        ):
            raise die(
                f"'{text}' is not a port forward",
                hint="write HOSTPORT:GUESTPORT, e.g. 2222:22 (the host side binds 127.0.0.1)",
                exit_code=Exit.USAGE,
            )
        return cls(int(host), int(guest))


@dataclass(frozen=True)
class Machine:
    memory_mib: int = 4096
    cpus: int = 2
    forwards: tuple[Forward, ...] = ()
    # Writes go to a temporary overlay: the disk stays as it was made.
    snapshot: bool = False


def qemu_argv(disk: Disk, directory: Path, machine: Machine, accel: str) -> list[str]:
    netdev = "user,id=net0,restrict=on" + "".join(
        f",hostfwd=tcp:127.0.0.1:{forward.host}-:{forward.guest}" for forward in machine.forwards
    )
    drive = f"file={directory / disk.path},format={disk.format},if=virtio,cache=unsafe"
    if machine.snapshot:
        drive += ",snapshot=on"
    return [
        QEMU,
        "-accel",
        accel,
        "-cpu",
        "host" if accel == "kvm" else "max",
        "-m",
        str(machine.memory_mib),
        "-smp",
        str(machine.cpus),
        "-nographic",
        "-no-user-config",
        "-nodefaults",
        "-serial",
        "stdio",
        "-kernel",
        str(directory / disk.kernel),
        "-initrd",
        str(directory / disk.initrd),
        "-append",
        disk.cmdline,
        "-drive",
        drive,
        "-netdev",
        netdev,
        "-device",
        "virtio-net-pci,netdev=net0",
        "-device",
        "virtio-rng-pci",
    ]


@functools.cache
def accelerator(kernel: Path) -> str:
    """'kvm' when a probe boot of `kernel` under KVM gets as far as its root-mount panic,
    else 'tcg'. Nested KVM may exist and still fail at the first instructions."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    argv = [QEMU, "-accel", "kvm", "-cpu", "host", "-m", "256", "-nographic", "-no-user-config"]
    argv += ["-nodefaults", "-serial", "stdio", "-no-reboot", "-kernel", str(kernel)]
    argv += ["-append", "console=ttyS0 panic=-1"]
    try:
        probe = subprocess.run(argv, capture_output=True, timeout=PROBE_S, check=False)
    except subprocess.TimeoutExpired:
        return "tcg"
    said = probe.stdout + probe.stderr
    works = b"Kernel panic" in said or b"VFS: Unable to mount root" in said
    log(f"  KVM probe: {'works' if works else 'fails'}; using {'kvm' if works else 'tcg'}")
    return "kvm" if works else "tcg"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serial_tail(log_file: Path, lines: int = 25) -> str:
    try:
        text = log_file.read_bytes().decode(errors="replace")
    except FileNotFoundError:
        return "(no serial output)"
    tail = [line.rstrip("\r") for line in text.splitlines() if line.strip()][-lines:]
    return "\n    ".join(tail) or "(no serial output)"


@dataclass
class Running:
    """A booted VM: its qemu process and where its serial console goes."""

    process: subprocess.Popen[bytes]
    serial: Path
    machine: Machine

    def wait_for_port(self, guest: int, timeout_s: float, what: str) -> None:
        """Until the forward to `guest` answers with a banner (sshd's, say): the guest's own
        service, not qemu's listener, which accepts before the guest is up."""
        host = next(f.host for f in self.machine.forwards if f.guest == guest)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise die(
                    f"the VM stopped (qemu exit {self.process.returncode}) before {what}; "
                    f"its serial console's last lines:\n    {serial_tail(self.serial)}",
                    hint="see the whole console in " + str(self.serial),
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", host), timeout=5) as connection,
            ):
                connection.settimeout(10)
                if connection.recv(64):
                    return
            time.sleep(1)
        raise die(
            f"the VM did not get to {what} within {timeout_s:g}s; its serial console's last "
            f"lines:\n    {serial_tail(self.serial)}",
            hint="see the whole console in " + str(self.serial),
        )


@contextlib.contextmanager
def boot(directory: Path, machine: Machine, serial: Path | None = None) -> Iterator[Running]:
    """Boot the disk in `directory` in the background; stopped (and reaped) when the block
    ends. The serial console goes to `serial` (a temporary file by default)."""
    require(QEMU)
    disk = Disk.read(directory)
    accel = accelerator(directory / disk.kernel)
    serial = serial or Path(tempfile.mkstemp(prefix="bootlab-vm-", suffix=".log")[1])
    log(f"  booting {disk.image} ({accel}); serial console in {serial}")
    with (
        serial.open("wb") as console,
        spawn(
            qemu_argv(disk, directory, machine, accel),
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            stop_timeout=5,
            what="qemu",
        ) as process,
    ):
        yield Running(process, serial, machine)


def run_interactive(directory: Path, machine: Machine) -> int:
    """`build.py vm`: qemu in the foreground, the serial console on this terminal (Ctrl-A X
    quits qemu)."""
    require(QEMU)
    disk = Disk.read(directory)
    argv = qemu_argv(disk, directory, machine, accelerator(directory / disk.kernel))
    for forward in machine.forwards:
        log(f"  127.0.0.1:{forward.host} → guest port {forward.guest}")
    log("  the serial console follows; Ctrl-A X stops the VM")
    return subprocess.run(argv, check=False).returncode


def ssh_argv(port: int, identity: Path, user: str = "root") -> Sequence[str]:
    """ssh into a VM booted here: its host keys are new on every disk, so they are neither
    checked nor remembered (the forward is bound to 127.0.0.1 on this machine)."""
    return [
        "ssh",
        "-p",
        str(port),
        "-i",
        str(identity),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
        f"{user}@127.0.0.1",
    ]
