"""bootc-image-builder's config.toml, checked against its documented format.

From the bootc-image-builder README / RHEL "image mode" docs (Supported image customizations
for a configuration file):

    [[customizations.user]]        name (required), password, key, groups (list)
    [[customizations.filesystem]]  mountpoint, minsize ("10 GiB")
    [customizations.kernel]        append (one string), name

and bootc-image-builder's mountpoint policy (bib/cmd/bootc-image-builder/image.go,
checkMountpoints): only `/`, `/boot` and directories *under* /var, never `/var` itself;
btrfs root filesystems allow only `/` and `/boot`.
"""

from __future__ import annotations

import tomllib

import pytest

from image.render import kernel_args, render_bib_config
from image.spec import DEFAULT_SPEC, ImageSpec, SpecFile

pytestmark = pytest.mark.unit

PROFILES = list(SpecFile.read(DEFAULT_SPEC).profiles)
BIB_TYPES = ("qcow2", "ami", "raw", "iso")
USER_KEYS = {"name", "password", "key", "groups"}
FILESYSTEM_KEYS = {"mountpoint", "minsize"}
KERNEL_KEYS = {"append", "name"}
BIB_DENIED_UNDER_VAR = (
    "/var/home",
    "/var/lock",
    "/var/mail",
    "/var/mnt",
    "/var/roothome",
    "/var/run",
    "/var/srv",
    "/var/usrlocal",
)


def check_format(config: dict, disk_type: str) -> None:
    """Everything bootc-image-builder's config.toml allows, and nothing else."""
    assert set(config) <= {"customizations"}, f"unexpected top-level keys: {set(config)}"
    customizations = config.get("customizations", {})
    assert isinstance(customizations, dict)
    assert set(customizations) <= {"user", "filesystem", "kernel"}

    users = customizations.get("user", [])
    assert isinstance(users, list), "customizations.user must be an array of tables"
    for user in users:
        assert isinstance(user, dict)
        assert set(user) <= USER_KEYS, f"unknown user keys: {set(user) - USER_KEYS}"
        assert isinstance(user["name"], str) and user["name"]
        for key in ("password", "key"):
            assert isinstance(user.get(key, ""), str)
        assert isinstance(user.get("groups", []), list)
        assert all(isinstance(group, str) for group in user.get("groups", []))

    filesystems = customizations.get("filesystem", [])
    if disk_type == "iso":
        assert "filesystem" not in customizations, "anaconda-iso rejects filesystem sizes"
    assert isinstance(filesystems, list)
    for filesystem in filesystems:
        assert isinstance(filesystem, dict) and set(filesystem) == FILESYSTEM_KEYS
        assert filesystem["mountpoint"].startswith("/")
        assert isinstance(filesystem["minsize"], str)

    if "kernel" in customizations:
        kernel = customizations["kernel"]
        assert isinstance(kernel, dict) and set(kernel) <= KERNEL_KEYS
        assert isinstance(kernel["append"], str) and kernel["append"].strip()


def parsed(spec: ImageSpec, disk_type: str) -> dict:
    return tomllib.loads(render_bib_config(spec, disk_type))


def check_matches_spec(spec: ImageSpec, disk_type: str) -> None:
    customizations = parsed(spec, disk_type).get("customizations", {})
    expected_users = []
    for user in spec.disk.users:
        entry: dict = {"name": user.name, "groups": list(user.groups)}
        if user.password_hash:
            entry["password"] = user.password_hash
        if user.ssh_keys:
            entry["key"] = "\n".join(user.ssh_keys)
        expected_users.append(entry)
    assert customizations.get("user", []) == expected_users

    expected_filesystems = (
        []
        if disk_type == "iso"
        else [{"mountpoint": fs.mountpoint, "minsize": fs.minsize} for fs in spec.disk.filesystems]
    )
    assert customizations.get("filesystem", []) == expected_filesystems

    # bootc bases carry kernel arguments in kargs.d; BIB gets them only for other bases.
    if spec.base.bootc or not kernel_args(spec):
        assert "kernel" not in customizations
    else:
        assert customizations["kernel"] == {"append": " ".join(kernel_args(spec))}


@pytest.mark.parametrize("disk_type", BIB_TYPES)
@pytest.mark.parametrize("profile", PROFILES)
def test_profile_config_format(profile: str, disk_type: str) -> None:
    spec = SpecFile.read(DEFAULT_SPEC).resolve(profile)
    check_format(parsed(spec, disk_type), disk_type)
    check_matches_spec(spec, disk_type)


RICH = """
profiles:
  rich:
    name: rich
    version: "1"
    base: {{image: localhost/debian:bookworm, family: apt, bootc: {bootc}}}
    container_init: true
    kernel: {{args: [console=ttyS0, "iommu=pt"]}}
    disk:
      rootfs: ext4
      users:
        - name: admin
          groups: [wheel, adm]
          password_hash: $6$rounds=5000$salt$hash/with.dots
          ssh_keys:
            - ssh-ed25519 AAAAC3Nza admin@host
            - 'ssh-rsa AAAAB3 "quoted" back\\slash'
        - name: ops
      filesystems:
        - {{mountpoint: /, minsize: 20 GiB}}
        - {{mountpoint: /var/lib/containers, minsize: 100 GiB}}
    registry: {{repository: localhost/rich}}
"""


@pytest.mark.parametrize("bootc", ["true", "false"])
@pytest.mark.parametrize("disk_type", BIB_TYPES)
def test_rich_spec(write_spec, bootc: str, disk_type: str) -> None:
    spec = SpecFile.read(write_spec(RICH.format(bootc=bootc))).resolve()
    config = parsed(spec, disk_type)
    check_format(config, disk_type)
    check_matches_spec(spec, disk_type)
    admin, ops = config["customizations"]["user"]
    assert admin["key"].splitlines()[1] == 'ssh-rsa AAAAB3 "quoted" back\\slash'  # escaped
    assert ops == {"name": "ops", "groups": []}
    if bootc == "false":
        assert config["customizations"]["kernel"]["append"] == "console=ttyS0 iommu=pt"


def test_no_users_no_filesystems_is_an_empty_config(write_spec) -> None:
    spec = SpecFile.read(
        write_spec(
            """
            profiles:
              bare:
                name: bare
                version: "1"
                base: {image: quay.io/fedora/fedora-bootc:42, family: dnf, bootc: true}
                registry: {repository: quay.io/x/y}
            """
        )
    ).resolve()
    for disk_type in BIB_TYPES:
        assert parsed(spec, disk_type) == {}


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_mountpoints_are_accepted_by_bootc_image_builder(profile: str) -> None:
    spec = SpecFile.read(DEFAULT_SPEC).resolve(profile)
    for disk_type in ("qcow2", "ami", "raw"):
        for filesystem in parsed(spec, disk_type)["customizations"].get("filesystem", []):
            mountpoint = filesystem["mountpoint"]
            if spec.disk.rootfs == "btrfs":
                assert mountpoint in ("/", "/boot")
            assert mountpoint in ("/", "/boot") or mountpoint.startswith("/var/"), mountpoint
            assert not any(
                mountpoint == denied or mountpoint.startswith(denied + "/")
                for denied in BIB_DENIED_UNDER_VAR
            ), mountpoint


@pytest.mark.parametrize("char", ["\r", "\x01", "\x7f"])
def test_control_characters_in_ssh_keys_stay_valid_toml(write_spec, char: str) -> None:
    escaped = char.encode("unicode_escape").decode()
    spec = SpecFile.read(
        write_spec(
            f"""
            profiles:
              p:
                name: p
                version: "1"
                base: {{image: quay.io/fedora/fedora-bootc:42, family: dnf, bootc: true}}
                disk:
                  users:
                    - name: admin
                      ssh_keys: ["ssh-ed25519 AAAA{escaped}x"]
                registry: {{repository: quay.io/x/y}}
            """
        )
    ).resolve()
    assert spec.disk.users[0].ssh_keys[0].endswith(f"{char}x")
    assert parsed(spec, "qcow2")["customizations"]["user"][0]["key"].endswith(f"{char}x")
