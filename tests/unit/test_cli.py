"""build.py as a user runs it: clear errors and non-zero exits for bad input, real outputs."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from image.spec import DEFAULT_SPEC

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def build_py(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "build.py"), "--quiet", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


def spec_with_admin_key(tmp_path: Path) -> Path:
    document = yaml.safe_load(DEFAULT_SPEC.read_text())
    document["common"]["disk"]["users"][0]["ssh_keys"] = ["ssh-ed25519 AAAAC3Nza admin@example"]
    path = tmp_path / "image.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_disk_writes_a_bib_config_and_the_exact_command(tmp_path: Path) -> None:
    spec = spec_with_admin_key(tmp_path)
    result = build_py("--spec", str(spec), "disk", "--type", "iso", "--output", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    config = tomllib.loads((tmp_path / "o" / "config.toml").read_text())
    assert config["customizations"]["user"][0]["key"] == "ssh-ed25519 AAAAC3Nza admin@example"
    assert "filesystem" not in config["customizations"]  # anaconda-iso refuses them
    assert "--type anaconda-iso" in result.stdout
    assert f"{tmp_path / 'o' / 'config.toml'}:/config.toml:ro" in result.stdout


def test_a_profile_without_bootc_makes_only_disks_it_can_boot(tmp_path: Path) -> None:
    """bootlab makes the dev profile's disk itself: raw or qcow2, never bootc-image-builder's
    ami or iso, and no config.toml for a builder that is not used."""
    result = build_py("disk", "--profile", "dev", "--type", "ami", "--output", str(tmp_path))
    assert result.returncode == 2
    assert "profile 'dev' makes raw or qcow2 disks, not ami" in result.stderr
    assert not (tmp_path / "config.toml").exists()


def test_a_disk_of_an_image_not_built_says_how_to_build_it(tmp_path: Path) -> None:
    result = build_py(
        "disk",
        "--profile",
        "dev",
        "--type",
        "raw",
        "--image",
        "localhost/bootlab-none:x",
        "--output",
        str(tmp_path),
    )
    assert result.returncode == 6, result.stderr
    assert "image localhost/bootlab-none:x is not built yet" in result.stderr
    assert "python build.py build --profile dev" in result.stderr
    assert not list(tmp_path.glob("disk.*"))


def test_a_disk_size_is_checked_before_any_work(tmp_path: Path) -> None:
    result = build_py(
        "disk", "--profile", "dev", "--type", "raw", "--size", "lots", "--output", str(tmp_path)
    )
    assert result.returncode == 2
    assert "'lots' is not a size" in result.stderr


def test_disk_refuses_users_nobody_can_log_in_as(tmp_path: Path) -> None:
    result = build_py("disk", "--type", "qcow2", "--output", str(tmp_path))
    assert result.returncode == 1
    assert "disk.users[0] 'admin' has neither ssh_keys nor password_hash" in result.stderr


def test_check_reports_containerfile_drift(tmp_path: Path) -> None:
    document = yaml.safe_load(DEFAULT_SPEC.read_text())
    document["common"]["version"] = "9.9.9"
    spec = tmp_path / "image.yaml"
    spec.write_text(yaml.safe_dump(document))
    result = build_py("--spec", str(spec), "check")
    assert result.returncode == 1
    assert "Containerfile does not match the default profile's render" in result.stderr
    assert '+      org.opencontainers.image.version="9.9.9"' in result.stderr


def test_unknown_profile_is_one_clear_error() -> None:
    result = build_py("build", "--profile", "nope")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: profile 'nope' does not exist in {DEFAULT_SPEC}",
        "  hint: choose one of: rhel, centos, fedora, dev",
    ]


def test_check_and_lint_pass_on_the_repository() -> None:
    for command in ("check", "lint"):
        result = build_py(command)
        assert result.returncode == 0, result.stderr + result.stdout
