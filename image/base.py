"""Base images the project makes itself: the dev profile's Debian rootfs via debootstrap.

The rootfs tarball is cached under a key of its inputs, and the imported image carries that
key as a label, so a changed package list rebuilds and an unchanged one costs nothing.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bootlab import files
from bootlab.errors import die

from image import podman
from image.cache import cache_dir, key_of
from image.log import log, step
from image.run import run
from image.spec import Bootstrap, ImageSpec

KEY_LABEL = "io.bootlab.base-key"


def ensure_base(spec: ImageSpec) -> None:
    """Make sure the spec's base image exists locally; build it when the spec says how."""
    bootstrap = spec.base.bootstrap
    if bootstrap is None:
        if podman.image_exists(spec.base.image):
            return
        if spec.base.image.startswith("localhost/"):
            raise die(
                f"base image {spec.base.image} is not in local storage, and localhost/ images "
                "cannot be pulled",
                hint="build or load it first (podman build / podman load), or add "
                "base.bootstrap to make it with debootstrap",
            )
        log(f"  base {spec.base.image} is not local; podman will pull it during the build")
        return
    key = key_of(bootstrap.model_dump())
    if podman.image_label(spec.base.image, KEY_LABEL) == key:
        log(f"  base {spec.base.image} is current (key {key})")
        return
    tarball = cache_dir() / "base" / f"{key}.tar"
    if not tarball.exists():
        _debootstrap(bootstrap, tarball)
    with step(f"importing {tarball.name} as {spec.base.image}"):
        run(
            [
                "podman",
                "import",
                "--change",
                f"LABEL {KEY_LABEL}={key}",
                "--change",
                'CMD ["/sbin/init"]',
                tarball,
                spec.base.image,
            ],
            capture=True,
            what="podman import",
        )


def _debootstrap(bootstrap: Bootstrap, tarball: Path) -> None:
    if os.geteuid() != 0:
        raise die("debootstrap needs root to make the dev base", hint="run as root (sudo)")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(dir=tarball.parent) as work,
        step(f"debootstrap {bootstrap.suite} ({len(bootstrap.include)} extra packages)"),
    ):
        rootfs = Path(work) / "rootfs"
        command = ["debootstrap", "--variant=minbase"]
        if bootstrap.include:
            command.append("--include=" + ",".join(bootstrap.include))
        run(
            [*command, bootstrap.suite, rootfs, bootstrap.mirror],
            capture=True,
            what=f"debootstrap of {bootstrap.suite} from {bootstrap.mirror}",
        )
        # Leave no host identity or package caches in the base.
        for leftover in ("etc/machine-id", "etc/hostname"):
            (rootfs / leftover).unlink(missing_ok=True)
        (rootfs / "etc/machine-id").touch()
        run(
            ["rm", "-rf", rootfs / "var/cache/apt/archives", rootfs / "var/lib/apt/lists"],
            capture=True,
        )
        # A killed run never leaves a half tarball behind to be imported next time.
        with files.cache_entry(tarball) as partial:
            run(
                ["tar", "--numeric-owner", "-C", rootfs, "-cf", partial, "."],
                capture=True,
                what="packing the rootfs",
            )
