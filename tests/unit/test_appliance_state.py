"""The appliance's files: config loading with file:line errors, auth files for podman and
bootc (atomic, 0600, merged, corrupt ones kept), and the GPU lock."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from bootlab import auth, config, gpu_lock
from bootlab.errors import BootlabError
from bootlab.paths import Paths

pytestmark = pytest.mark.unit


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_config_defaults_then_admin_file_wins(paths: Paths) -> None:
    assert config.load(paths).serve.port == 8000
    write(paths.defaults_file, "serve:\n  port: 9000\n  host: 10.0.0.1\n")
    write(paths.config_file, "serve:\n  port: 9100\n")
    loaded = config.load(paths)
    assert (loaded.serve.port, loaded.serve.host) == (9100, "10.0.0.1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("serve:\n  port: 0\n", "config.yaml:2: serve.port: Input should be greater than"),
        (
            "serve:\n  modle: x\n",
            "config.yaml:2: serve.modle: unknown setting (did you mean 'model'?)",
        ),
        ("serve:\n  model: ../etc\n", "config.yaml:2: serve.model: String should match"),
        ("- a list\n", "config.yaml:1: the config must be a mapping"),
        ("serve: [\n", "config.yaml:2: not valid YAML"),
        ("trian: {}\n", "config.yaml:1: trian: unknown setting (did you mean 'train'?)"),
    ],
)
def test_config_errors_name_file_line_key(paths: Paths, text: str, expected: str) -> None:
    write(paths.config_file, text)
    with pytest.raises(BootlabError) as error:
        config.load(paths)
    assert expected in error.value.message
    assert error.value.hint


def test_config_error_points_at_the_file_that_set_it(paths: Paths) -> None:
    write(paths.defaults_file, "serve:\n  backend: tgi\n")
    write(paths.config_file, "train:\n  gpus: 2\n")
    with pytest.raises(BootlabError) as error:
        config.load(paths)
    assert "usr/share/bootlab/config.yaml:2: serve.backend" in error.value.message


def test_config_init_text_loads_and_refuses_overwrite(paths: Paths) -> None:
    text = config.initial_text(8, "Nvidia 8x H100")
    assert config.write_initial(paths, text, force=False) is None
    loaded = config.load(paths)
    assert (loaded.serve.backend, loaded.serve.gpus, loaded.train.gpus) == ("auto", 8, 8)
    with pytest.raises(BootlabError):
        config.write_initial(paths, "x: 1\n", force=False)
    assert paths.config_file.read_text() == text  # untouched
    backup = config.write_initial(paths, config.initial_text(0, "CPU only"), force=True)
    assert backup is not None and backup.read_text() == text


def _auths(path: Path) -> dict[str, object]:
    return json.loads(path.read_text())["auths"]  # type: ignore[no-any-return]


def test_store_writes_both_files_0600_and_merges(paths: Paths) -> None:
    write(paths.ostree_auth, json.dumps({"auths": {"quay.io": {"auth": "eDp5"}}, "x": 1}))
    warnings = auth.store(paths, "127.0.0.1:5000", auth.Credentials("robot", "pw"))
    assert warnings == []
    for path in (paths.containers_auth, paths.ostree_auth):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert _auths(path)["127.0.0.1:5000"] == {"auth": "cm9ib3Q6cHc="}
    assert "quay.io" in _auths(paths.ostree_auth)
    assert json.loads(paths.ostree_auth.read_text())["x"] == 1  # other keys kept
    assert not list(paths.ostree_auth.parent.glob(".*partial"))
    entries, _ = auth.stored(paths)
    by_name = {entry.registry: entry for entry in entries}
    assert by_name["127.0.0.1:5000"] == auth.Stored("127.0.0.1:5000", "robot", True, True)
    assert by_name["quay.io"] == auth.Stored("quay.io", "x", False, True)


def test_corrupt_auth_file_is_kept_aside_and_reported(paths: Paths) -> None:
    write(paths.ostree_auth, "{not json")
    warnings = auth.store(paths, "reg.example", auth.Credentials("u", "p"))
    backups = list(paths.ostree_auth.parent.glob("auth.json.corrupt-*"))
    assert len(backups) == 1 and backups[0].read_text() == "{not json"
    assert str(backups[0]) in warnings[0]
    assert "reg.example" in _auths(paths.ostree_auth)


def test_runtime_auth_file_is_kept_in_step_and_logout_clears_all(paths: Paths) -> None:
    write(
        paths.containers_runtime_auth,
        json.dumps({"auths": {"reg.example": {"auth": "b2xkOm9sZA=="}}}),
    )
    auth.store(paths, "reg.example", auth.Credentials("new", "pw"))
    assert _auths(paths.containers_runtime_auth)["reg.example"] == {"auth": "bmV3OnB3"}
    removed = auth.remove(paths, "reg.example")
    assert set(removed) == {paths.containers_auth, paths.ostree_auth, paths.containers_runtime_auth}
    assert auth.remove(paths, "reg.example") == []


def test_stored_reports_corrupt_files_without_failing(paths: Paths) -> None:
    write(paths.containers_auth, "[]")
    entries, warnings = auth.stored(paths)
    assert entries == [] and "no valid 'auths' table" in warnings[0]


_HOLD = """
import sys, time
from pathlib import Path
from bootlab import gpu_lock
gpu_lock.acquire(Path(sys.argv[1]), "serve")
print("held", flush=True)
time.sleep(60)
"""


def test_gpu_lock_excludes_other_processes_and_names_the_holder(tmp_path: Path) -> None:
    lock = tmp_path / "run" / "gpu.lock"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "appliance")}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(lock)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        current = gpu_lock.holder(lock)
        assert current is not None and (current.name, current.pid) == ("serve", holder.pid)
        with pytest.raises(BootlabError) as refused:
            gpu_lock.acquire(lock, "train")
        assert refused.value.exit_code == 75
        assert refused.value.message == (
            f"serving is running (pid {holder.pid}): stop bootlab-serve first"
        )
        assert "systemctl stop bootlab-serve" in (refused.value.hint or "")
    finally:
        holder.kill()
        holder.wait()
    # Released with the process, even killed: the next one gets it.
    assert gpu_lock.holder(lock) is None
    descriptor = gpu_lock.acquire(lock, "train")
    os.close(descriptor)
