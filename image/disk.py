"""A bootable disk of a profile without bootc (dev), made from the built image itself: the
image's own kernel and initramfs boot it, as they would on a bootc host. bootc profiles go
through bootc-image-builder instead (`build.py disk` writes its config)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bootlab.errors import Exit, die

from image.log import log
from image.run import output, require, run
from image.spec import ImageSpec, User

MiB = 1024 * 1024
# Room the booted appliance needs beyond the image's files: journal, the model store's first
# models, pip caches. The file is sparse, so the headroom costs no host disk until it is used.
HEADROOM = 4096 * MiB
MANIFEST = "disk.json"
# The disk's one network: qemu's user network (DHCP from qemu itself). Written to the disk, not
# the image: a container of the image shares its host's network and must not manage it.
NETWORK = """[Match]
Type=ether

[Network]
DHCP=ipv4
"""


@dataclass(frozen=True)
class Disk:
    """What `build.py vm` (and the vm test tier) needs to boot a disk: it lies beside the
    disk as disk.json."""

    path: str
    format: str
    kernel: str
    initrd: str
    cmdline: str
    image: str
    image_id: str
    size: int

    @classmethod
    def read(cls, directory: Path) -> Disk:
        manifest = directory / MANIFEST
        try:
            fields = json.loads(manifest.read_text())
            return cls(**fields)
        except FileNotFoundError:
            raise die(
                f"{directory} holds no disk ({MANIFEST} is missing)",
                hint="make one: python build.py disk --profile dev --type raw",
                exit_code=Exit.NOT_FOUND,
            ) from None
        except (ValueError, TypeError) as error:
            raise die(
                f"{manifest} is not a disk manifest: {error}",
                hint="make the disk again: python build.py disk --profile dev --type raw",
                exit_code=Exit.CORRUPT,
            ) from None


def parse_size(text: str) -> int:
    """'8G', '8GiB', '512M', '512MiB' or a byte count."""
    units = {"": 1, "K": 1024, "M": MiB, "G": 1024 * MiB, "T": 1024 * 1024 * MiB}
    number = text.strip().removesuffix("iB").removesuffix("B")
    unit = number[-1:].upper() if number[-1:].isalpha() else ""
    digits = number[: len(number) - len(unit)].strip()
    if not digits.isdigit() or unit not in units:
        raise die(
            f"'{text}' is not a size", hint="write it like 8G, 8GiB or 512M", exit_code=Exit.USAGE
        )
    return int(digits) * units[unit]


def make_disk(
    spec: ImageSpec,
    image: str,
    directory: Path,
    *,
    disk_type: str,
    size: int | None = None,
    authorized_keys: Sequence[str] = (),
) -> Disk:
    """Write `directory/disk.{raw,qcow2}` (ext4 root, no partition table: the kernel mounts
    /dev/vda), the image's kernel and initramfs next to it, and disk.json."""
    require("mkfs.ext4")
    if disk_type == "qcow2":
        require("qemu-img")
    directory.mkdir(parents=True, exist_ok=True)
    image_id = output(["podman", "image", "inspect", "--format", "{{.Id}}", image], check=False)
    if not image_id:
        raise die(
            f"image {image} is not built yet",
            hint=f"run `python build.py build --profile {spec.profile}` first",
            exit_code=Exit.NOT_FOUND,
        )
    with _exported(image, directory) as rootfs:
        kernel, initrd = _boot_files(rootfs, spec)
        _prepare_rootfs(rootfs, spec.disk.users, authorized_keys)
        needed = _tree_size(rootfs) * 11 // 10 + 256 * MiB
        if size is not None and size < needed:
            raise die(
                f"a disk of {size // MiB} MiB is too small for {image}: its files need "
                f"{needed // MiB} MiB",
                hint=f"pass --size {needed // MiB + 1024}M or more (or leave --size out)",
                exit_code=Exit.USAGE,
            )
        size = size or needed + HEADROOM
        for stale in directory.glob("disk.*"):
            stale.unlink()
        shutil.copyfile(rootfs / kernel, directory / "vmlinuz")
        shutil.copyfile(rootfs / initrd, directory / "initrd.img")
        raw = directory / "disk.raw"
        log(f"  writing an ext4 disk of {size // MiB} MiB from {image}")
        run(
            ["mkfs.ext4", "-q", "-F", "-L", "root", "-d", rootfs, raw, f"{size // 1024}k"],
            what="mkfs.ext4",
        )
    path = raw
    if disk_type == "qcow2":
        path = directory / "disk.qcow2"
        run(["qemu-img", "convert", "-O", "qcow2", raw, path], what="qemu-img convert")
        raw.unlink()
    disk = Disk(
        path=path.name,
        format=disk_type,
        kernel="vmlinuz",
        initrd="initrd.img",
        cmdline=" ".join(["root=/dev/vda", "rw", "console=ttyS0", *spec.kernel.args]),
        image=image,
        image_id=image_id,
        size=size,
    )
    (directory / MANIFEST).write_text(json.dumps(asdict(disk), indent=2) + "\n")
    return disk


@contextlib.contextmanager
def _exported(image: str, directory: Path) -> Iterator[Path]:
    """The image's filesystem, unpacked as root (owners and modes kept) next to the disk and
    removed afterwards, whatever happens."""
    container = output(["podman", "create", "--quiet", image, "/bin/true"], what="podman create")
    scratch = Path(tempfile.mkdtemp(prefix=".rootfs-", dir=directory))
    try:
        export = scratch / "image.tar"
        run(["podman", "export", "--output", export, container], what="podman export")
        rootfs = scratch / "rootfs"
        rootfs.mkdir()
        run(["tar", "-x", "--numeric-owner", "-C", rootfs, "-f", export], what="tar")
        export.unlink()
        yield rootfs
    finally:
        run(["podman", "rm", "--force", container], capture=True, check=False)
        shutil.rmtree(scratch, ignore_errors=True)


def _boot_files(rootfs: Path, spec: ImageSpec) -> tuple[str, str]:
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    initrds = sorted((rootfs / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise die(
            f"profile '{spec.profile}' has no kernel and initramfs in /boot, so it cannot boot "
            "as a VM",
            hint="add a kernel and initramfs-tools to the profile "
            "(base.bootstrap.include: linux-image-cloud-amd64, initramfs-tools)",
            exit_code=Exit.NOT_CONFIGURED,
        )
    return str(kernels[-1].relative_to(rootfs)), str(initrds[-1].relative_to(rootfs))


def _prepare_rootfs(rootfs: Path, users: Sequence[User], authorized_keys: Sequence[str]) -> None:
    """What a container image lacks to boot on its own disk: an fstab, a machine-id made on
    first boot, a network, its own SSH host keys, and the spec's users."""
    (rootfs / "etc/fstab").write_text("/dev/vda / ext4 defaults 0 1\n")
    # An empty machine-id: systemd makes one on first boot (and runs its first-boot units).
    (rootfs / "etc/machine-id").write_text("")
    # Debian's openssh-server made host keys when the image was built, so every disk of the
    # image would share them: the disk has none, and the image's ssh.service makes its own.
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (rootfs / "etc/systemd/network/20-bootlab-vm.network").write_text(NETWORK)
    run(["systemctl", "--root", rootfs, "enable", "systemd-networkd.service"], capture=True)
    for user in users:
        _add_user(rootfs, user)
    if authorized_keys:
        _authorize(rootfs, "root", Path("/root"), (0, 0), authorized_keys)


def _add_user(rootfs: Path, user: User) -> None:
    groups = [group for group in user.groups if _has_group(rootfs, group)]
    argv: list[str | Path] = ["useradd", "--root", rootfs, "--create-home", "--shell", "/bin/bash"]
    argv.append(user.name)
    if groups:
        argv[1:1] = ["--groups", ",".join(groups)]
    if user.password_hash:
        # A crypt hash, never a password: it is fine in argv (useradd takes it there).
        argv[1:1] = ["--password", user.password_hash]
    run(argv, what=f"useradd {user.name}", capture=True)
    passwd = (rootfs / "etc/passwd").read_text().splitlines()
    fields = next(line for line in passwd if line.startswith(f"{user.name}:")).split(":")
    _authorize(rootfs, user.name, Path(fields[5]), (int(fields[2]), int(fields[3])), user.ssh_keys)


def _has_group(rootfs: Path, group: str) -> bool:
    return any(line.startswith(f"{group}:") for line in (rootfs / "etc/group").read_text().split())


def _authorize(
    rootfs: Path, name: str, home: Path, owner: tuple[int, int], keys: Sequence[str]
) -> None:
    if not keys:
        return
    ssh = rootfs / home.relative_to("/") / ".ssh"
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = ssh / "authorized_keys"
    existing = target.read_text().splitlines() if target.exists() else []
    target.write_text("\n".join([*existing, *keys]) + "\n")
    for path in (ssh, target):
        os.chown(path, *owner)
    target.chmod(0o600)
    log(f"  {name} may log in with {len(keys)} SSH key(s)")


def _tree_size(root: Path) -> int:
    """Bytes the files take on disk (blocks, not apparent size), links counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for directory, _, names in os.walk(root):
        for name in [".", *names]:
            stat = os.lstat(os.path.join(directory, name))
            if (stat.st_dev, stat.st_ino) in seen:
                continue
            seen.add((stat.st_dev, stat.st_ino))
            total += stat.st_blocks * 512 + 256  # an inode's share
    return total
