"""Render a validated spec into the build's artefacts: Containerfile, overlay files, BIB config.

Python decides what goes in (which accelerator recipe, which units, which kernel arguments);
the jinja2 templates in `image/templates/` only lay it out. Same spec → byte-identical output.
"""

from __future__ import annotations

import json
import shlex
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import jinja2
from bootlab.errors import die

from image.family import family_of
from image.spec import ImageSpec

TEMPLATES = Path(__file__).with_name("templates")
REPO_ROOT = Path(__file__).resolve().parent.parent
UNITS_DIR = REPO_ROOT / "units"
MODELS_DIR = "/usr/share/bootlab/models"
UPGRADE_INFORMER_TIMER = "bootlab-upgrade-informer.timer"
APPLIANCE_SOCKET = "bootlabd.socket"
# Serves or trains again after a reboot what ran before it (the desired state in /var).
RESTORE_UNIT = "bootlab-restore.service"
NVIDIA_CDI_UNIT = "bootlab-nvidia-cdi.service"
WHEELS_MOUNT = "/run/bootlab-wheels"
SOURCE_DATE_EPOCH = 315532800  # 1980-01-01, the earliest time a zip (wheel) can hold


@dataclass(frozen=True)
class Rendered:
    """Everything a build needs from the spec; `overlay` maps paths under / to file text."""

    containerfile: str
    overlay: dict[str, str] = field(default_factory=dict)


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - renders shell and TOML, never HTML
    )


def _template(name: str) -> jinja2.Template:
    return _environment().get_template(name)


# --- what goes in ---------------------------------------------------------------------------


def accelerator_recipe(spec: ImageSpec) -> str:
    """The template that installs the GPU stack, one per accelerator and package family."""
    name = f"accelerator/{spec.accelerator.type}-{spec.base.family}.j2"
    if not (TEMPLATES / name).is_file():
        raise die(
            f"profile '{spec.profile}': accelerator '{spec.accelerator.type}' has no recipe "
            f"for package family '{spec.base.family}'",
            hint="use a dnf base (rhel, centos, fedora) for this accelerator, or add "
            f"image/templates/{name}",
        )
    return name


def kernel_args(spec: ImageSpec) -> list[str]:
    args = list(spec.kernel.args)
    if spec.accelerator.type == "nvidia":
        # nouveau grabs the GPU before nvidia.ko can; keep it out of the initramfs too.
        args += ["rd.driver.blacklist=nouveau", "modprobe.blacklist=nouveau"]
    return list(dict.fromkeys(args))


def enabled_units(spec: ImageSpec) -> list[str]:
    # The API socket is always there; the daemon itself starts on the first request.
    units = [APPLIANCE_SOCKET, RESTORE_UNIT, *spec.appliance.enable]
    if spec.updates.informer:
        units.append(UPGRADE_INFORMER_TIMER)
    if spec.accelerator.type == "nvidia":
        if spec.accelerator.persistenced:
            units.append("nvidia-persistenced.service")
        if spec.accelerator.fabricmanager:
            units.append("nvidia-fabricmanager.service")
        units.append(NVIDIA_CDI_UNIT)
    return list(dict.fromkeys(units))


def shipped_units() -> list[str]:
    return sorted(path.name for path in UNITS_DIR.iterdir() if path.is_file())


@cache
def appliance_requirements() -> tuple[str, ...]:
    """The appliance wheel's runtime dependencies, read from the one place they are declared."""
    with (REPO_ROOT / "pyproject.toml").open("rb") as handle:
        project = tomllib.load(handle)["project"]
    return tuple(project["dependencies"])


def nvidia_packages(spec: ImageSpec) -> list[str]:
    accelerator = spec.accelerator
    if accelerator.type != "nvidia":
        return []
    driver = accelerator.driver
    cuda = accelerator.cuda.replace(".", "-")
    packages = [
        f"nvidia-driver-{driver}",
        f"nvidia-driver-cuda-{driver}",
        f"nvidia-driver-libs-{driver}",
        # nvcc and headers: DeepSpeed compiles its fused ops at first use.
        f"cuda-nvcc-{cuda}",
        f"cuda-cudart-devel-{cuda}",
    ]
    if accelerator.persistenced:
        packages.append(f"nvidia-persistenced-{driver}")
    if accelerator.fabricmanager:
        packages.append(f"nvidia-fabric-manager-{driver}")
    if accelerator.container_toolkit:
        packages.append("nvidia-container-toolkit")
    return packages


def ml_requirements(spec: ImageSpec) -> list[str]:
    return [f"{name}=={version}" for name, version in spec.ml.packages.items()]


def pip_install(
    spec: ImageSpec, venv: str, requirements: Iterable[str], ml_indexes: bool = False
) -> str:
    """The pip command for a venv: from the build's wheelhouse when offline, else an index
    (the ML stack's own indexes, e.g. PyTorch's CUDA wheels, only where `ml_indexes`)."""
    options = ["--no-cache-dir"]
    if spec.offline:
        options += ["--no-index", "--find-links", WHEELS_MOUNT]
    elif ml_indexes:
        if spec.ml.index_url:
            options += ["--index-url", spec.ml.index_url]
        for url in spec.ml.extra_index_urls:
            options += ["--extra-index-url", url]
    quoted = " ".join(shlex.quote(requirement) for requirement in requirements)
    return f"{venv}/bin/pip install {' '.join(options)} {quoted}"


def overlay_files(spec: ImageSpec) -> dict[str, str]:
    """Small config files generated from the spec, shipped in one COPY to the image root."""
    files: dict[str, str] = {}
    args = kernel_args(spec)
    if spec.base.bootc and args:
        files["usr/lib/bootc/kargs.d/10-bootlab.toml"] = _template("kargs.toml.j2").render(
            args=args
        )
    if spec.updates.informer:
        path = f"usr/lib/systemd/system/{UPGRADE_INFORMER_TIMER}.d/10-schedule.conf"
        files[path] = _template("upgrade-schedule.conf.j2").render(spec=spec)
    if spec.accelerator.type == "nvidia":
        files["usr/lib/modprobe.d/bootlab-blacklist-nouveau.conf"] = _template(
            "blacklist-nouveau.conf.j2"
        ).render()
        if spec.accelerator.fabricmanager:
            path = "usr/lib/systemd/system/nvidia-fabricmanager.service.d/10-nvswitch-only.conf"
            files[path] = _template("fabricmanager-nvswitch-only.conf.j2").render()
    return dict(sorted(files.items()))


# --- laying it out --------------------------------------------------------------------------


def render(spec: ImageSpec, spec_label: str = "image/image.yaml") -> Rendered:
    overlay = overlay_files(spec)
    containerfile = _template("Containerfile.j2").render(
        spec=spec,
        spec_label=spec_label,
        family=family_of(spec),
        accelerator=accelerator_recipe(spec),
        nvidia_packages=nvidia_packages(spec),
        ml_requirements=ml_requirements(spec),
        appliance_requirements=appliance_requirements(),
        pip_install=pip_install,
        units=enabled_units(spec),
        has_overlay=bool(overlay),
        models_dir=MODELS_DIR,
        wheels_mount=WHEELS_MOUNT,
        source_date_epoch=SOURCE_DATE_EPOCH,
    )
    return Rendered(containerfile=containerfile, overlay=overlay)


def render_bib_config(spec: ImageSpec, disk_type: str) -> str:
    """bootc-image-builder's config.toml: users, filesystems and kernel args for disks."""
    users = [
        {
            "name": user.name,
            "groups": list(user.groups),
            "key": "\n".join(user.ssh_keys) or None,
            "password": user.password_hash,
        }
        for user in spec.disk.users
    ]
    # anaconda-iso installs through kickstart and rejects filesystem customizations.
    filesystems = [] if disk_type == "iso" else list(spec.disk.filesystems)
    # bootc images carry their kernel args in kargs.d; only a non-bootc base needs them here.
    append = "" if spec.base.bootc else " ".join(kernel_args(spec))
    return _template("bib-config.toml.j2").render(
        users=users, filesystems=filesystems, kernel_append=append, toml=_toml_string
    )


def _toml_string(value: str) -> str:
    """A TOML basic string: JSON's escapes (\\uXXXX for control characters) are valid TOML."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")  # TOML bans DEL
