"""The dev profile really builds, runs the appliance, carries its labels and round-trips
through an authenticated local registry."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.support.infra import REPO_ROOT, Registry, build_py, podman_env, sh

pytestmark = pytest.mark.integration


def project_version() -> str:
    with (REPO_ROOT / "pyproject.toml").open("rb") as handle:
        return str(tomllib.load(handle)["project"]["version"])


def test_built_image_runs_the_appliance(dev_image: str) -> None:
    result = sh("podman", "run", "--rm", "--network=none", dev_image, "bootlab", "--version")
    assert result.stdout.strip() == f"bootlab {project_version()}"


def test_built_image_carries_labels(dev_image: str) -> None:
    labels = sh("podman", "image", "inspect", "--format", "{{json .Labels}}", dev_image).stdout
    values = json.loads(labels)
    revision = sh("git", "-C", REPO_ROOT, "rev-parse", "HEAD").stdout.strip()
    assert values["org.opencontainers.image.version"] == project_version()
    assert values["org.opencontainers.image.revision"].startswith(revision)
    assert values["org.opencontainers.image.title"] == "bootlab"
    assert values["io.bootlab.profile"] == "dev"
    assert "containers.bootc" not in values  # a debootstrap base has no bootc


def test_ml_stack_and_units_installed(dev_image: str) -> None:
    script = (
        "/usr/lib/bootlab/ml/bin/python -c 'import huggingface_hub, safetensors' && "
        "systemctl is-enabled bootlab-upgrade-informer.timer"
    )
    result = sh("podman", "run", "--rm", "--network=none", dev_image, "sh", "-c", script)
    assert result.stdout.strip() == "enabled"


def test_ml_stack_trains_on_cpu_only(dev_image: str) -> None:
    """The training stack is the CPU build of torch: no CUDA, and no nvidia-* wheel in the
    venv (PyPI's torch would have brought gigabytes of them)."""
    script = (
        "/usr/lib/bootlab/ml/bin/python -c 'import torch, transformers, peft, sentencepiece; "
        "print(torch.__version__, torch.cuda.is_available())' && "
        "/usr/lib/bootlab/ml/bin/pip list --format=freeze"
    )
    result = sh("podman", "run", "--rm", "--network=none", dev_image, "sh", "-c", script)
    first, *installed = result.stdout.splitlines()
    assert first == "2.13.0+cpu False"
    assert [line for line in installed if line.lower().startswith("nvidia")] == []


def push(registry: Registry, auth_file: Path, tag: str = "dev") -> subprocess.CompletedProcess[str]:
    env = {**podman_env(), "REGISTRY_AUTH_FILE": str(auth_file)}
    destination = f"{registry.host}/bootlab:{tag}"
    return build_py("push", "--profile", "dev", "--to", destination, env=env)


@pytest.fixture
def built_for_push(dev_image: str) -> str:
    # push takes the spec's tag (registry.repository:registry.tag); make it point at the test build.
    sh("podman", "tag", dev_image, "localhost/bootlab:dev")
    return dev_image


def test_push_round_trips_with_auth(
    built_for_push: str, registry: Registry, tmp_path: Path
) -> None:
    auth = registry.auth_file(tmp_path)
    result = push(registry, auth)
    assert result.returncode == 0, result.stderr
    assert registry.password not in result.stdout + result.stderr
    remote = f"docker://{registry.host}/bootlab:dev"
    inspected = sh("skopeo", "inspect", "--tls-verify=false", "--authfile", auth, remote)

    remote_layers = json.loads(inspected.stdout)["Layers"]
    assert len(remote_layers) >= 5
    pulled = f"{registry.host}/bootlab:dev"
    sh("podman", "rmi", "-f", pulled, check=False)
    sh("podman", "pull", "--tls-verify=false", "--authfile", auth, pulled)
    local = sh("podman", "image", "inspect", "--format", "{{json .RootFS.Layers}}", built_for_push)
    back = sh("podman", "image", "inspect", "--format", "{{json .RootFS.Layers}}", pulled)
    assert json.loads(back.stdout) == json.loads(local.stdout)


def test_push_with_wrong_password_is_refused_clearly(
    built_for_push: str, registry: Registry, tmp_path: Path
) -> None:
    wrong = "not-the-password"
    result = push(registry, registry.auth_file(tmp_path, password=wrong), tag="wrong")
    assert result.returncode != 0
    assert f"registry {registry.host} refused the credentials" in result.stderr
    assert "podman login" in result.stderr
    assert "Traceback" not in result.stderr
    assert wrong not in result.stdout + result.stderr


def test_push_without_credentials_is_refused_clearly(
    built_for_push: str, registry: Registry, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-auth.json"
    empty.write_text('{"auths": {}}')
    result = push(registry, empty, tag="anonymous")
    assert result.returncode != 0
    assert "refused the credentials" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_base_image_is_a_clear_error(write_spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec = write_spec(
        """
        default: dev
        profiles:
          dev:
            name: broken
            version: "1.0"
            base: {image: localhost/bootlab-no-such-base:1, family: apt, bootc: false}
            container_init: true
            offline: true
            registry: {repository: localhost/broken}
        """
    )
    result = build_py("--spec", str(spec), "build")
    assert result.returncode != 0
    assert "localhost/bootlab-no-such-base:1" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_podman_is_a_clear_error(tmp_path: Path) -> None:
    env = {
        **podman_env(),
        "PATH": str(tmp_path),
        "CONTAINER_HOST": "unix:///nonexistent",
        "BOOTLAB_CACHE": str(tmp_path),
    }
    result = build_py("push", "--profile", "dev", env=env)
    assert result.returncode != 0
    assert "'podman' is not installed" in result.stderr
    assert "Traceback" not in result.stderr


def test_extra_files_and_local_model_are_shipped(tmp_path: Path) -> None:
    """A spec with an extra file and a local model: both land in the image, the model as a
    layer of its own."""
    source = yaml.safe_load((REPO_ROOT / "image" / "image.yaml").read_text())
    profile = {**source["profiles"]["dev"], "name": "bootlab-extras"}
    profile["files"] = [{"src": "motd", "dest": "/etc/motd", "mode": "0640"}]
    profile["models"] = [{"name": "tiny", "path": "tiny-model"}]
    profile["registry"] = {"repository": "localhost/bootlab-extras", "tag": "test"}
    (tmp_path / "image.yaml").write_text(
        yaml.safe_dump({"default": "dev", "common": source["common"], "profiles": {"dev": profile}})
    )
    (tmp_path / "motd").write_text("welcome to the extras test\n")
    (tmp_path / "tiny-model").mkdir()
    (tmp_path / "tiny-model" / "config.json").write_text('{"model_type": "llama"}\n')

    result = build_py("--spec", str(tmp_path / "image.yaml"), "build")
    assert result.returncode == 0, result.stderr[-3000:]
    image = "localhost/bootlab-extras:test"
    script = "stat -c %a /etc/motd && cat /etc/motd /usr/share/bootlab/models/tiny/config.json"
    shown = sh("podman", "run", "--rm", "--network=none", image, "sh", "-c", script).stdout
    assert shown.splitlines() == ["640", "welcome to the extras test", '{"model_type": "llama"}']
    history = sh("podman", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout
    assert any("/usr/share/bootlab/models/tiny/" in line for line in history.splitlines())
    sh("podman", "rmi", "-f", image, check=False)
