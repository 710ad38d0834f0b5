"""The dev disk and its VM, without booting one: sizes, port forwards that stay on 127.0.0.1,
the qemu command line, a missing qemu, and a disk manifest that is missing or damaged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bootlab.errors import BootlabError, Exit

from image.disk import MANIFEST, Disk, parse_size
from image.vm import Forward, Machine, boot, qemu_argv, serial_tail

pytestmark = pytest.mark.unit

DISK = Disk(
    path="disk.raw",
    format="raw",
    kernel="vmlinuz",
    initrd="initrd.img",
    cmdline="root=/dev/vda rw console=ttyS0",
    image="localhost/bootlab:dev",
    image_id="0" * 64,
    size=8 << 30,
)


@pytest.mark.parametrize(
    ("text", "size"), [("8G", 8 << 30), ("8GiB", 8 << 30), ("512M", 512 << 20), ("4096", 4096)]
)
def test_sizes_read_as_people_write_them(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "8X", "-1G", ""])
def test_a_bad_size_is_a_usage_error(text: str) -> None:
    with pytest.raises(BootlabError) as refused:
        parse_size(text)
    assert refused.value.exit_code == Exit.USAGE


def test_forwards_bind_the_host_side_to_loopback_only() -> None:
    machine = Machine(forwards=(Forward(2222, 22), Forward.parse("8000:8000")))
    argv = qemu_argv(DISK, Path("/d"), machine, "tcg")
    netdev = argv[argv.index("-netdev") + 1]
    assert netdev.startswith("user,id=net0,restrict=on")
    assert "hostfwd=tcp:127.0.0.1:2222-:22" in netdev
    assert "hostfwd=tcp:127.0.0.1:8000-:8000" in netdev
    assert "hostfwd=tcp::" not in netdev  # never every address of the host


def test_the_image_kernel_boots_the_disk_and_snapshot_keeps_it_unchanged() -> None:
    argv = qemu_argv(DISK, Path("/d"), Machine(snapshot=True), "tcg")
    assert argv[argv.index("-kernel") + 1] == "/d/vmlinuz"
    assert argv[argv.index("-initrd") + 1] == "/d/initrd.img"
    assert argv[argv.index("-append") + 1] == DISK.cmdline
    assert argv[argv.index("-drive") + 1].endswith(",snapshot=on")
    assert argv[argv.index("-accel") + 1] == "tcg" and argv[argv.index("-cpu") + 1] == "max"


@pytest.mark.parametrize("text", ["22", "a:b", "0:22", "2222:70000", "2222:"])
def test_a_bad_forward_says_how_to_write_one(text: str) -> None:
    with pytest.raises(BootlabError) as refused:
        Forward.parse(text)
    assert refused.value.exit_code == Exit.USAGE
    assert "HOSTPORT:GUESTPORT" in (refused.value.hint or "")


def test_a_directory_without_a_disk_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(BootlabError) as refused:
        Disk.read(tmp_path)
    assert refused.value.exit_code == Exit.NOT_FOUND
    assert "build.py disk" in (refused.value.hint or "")


def test_a_damaged_manifest_is_corrupt_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text(json.dumps({"path": "disk.raw"}))
    with pytest.raises(BootlabError) as refused:
        Disk.read(tmp_path)
    assert refused.value.exit_code == Exit.CORRUPT


def test_without_qemu_the_error_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BootlabError) as refused, boot(tmp_path, Machine()):
        pass
    assert "'qemu-system-x86_64' is not installed" in refused.value.message
    assert "qemu-system-x86" in (refused.value.hint or "")


def test_the_serial_tail_is_what_a_person_reads_when_a_boot_fails(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_bytes(b"".join(b"line %d\r\n" % n for n in range(100)) + b"Kernel panic\r\n")
    tail = serial_tail(log, lines=3)
    assert tail.splitlines()[-1].strip() == "Kernel panic"
    assert "line 98" in tail and "line 96" not in tail
    assert serial_tail(tmp_path / "none.log") == "(no serial output)"
