"""`bootlab` as an admin runs it, against a real bootlabd in a temporary root: readable
tables, --json, exit codes, no tracebacks, no password in argv, and shell completion."""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from appliance_daemon import REPO_ROOT, Daemon, running_daemon

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    with running_daemon() as running:
        yield running


def bootlab(
    daemon: Daemon | None, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = daemon.env() if daemon else dict(os.environ)
    environment["PYTHONPATH"] = str(REPO_ROOT / "appliance")
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bootlab.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        check=False,
        timeout=60,
    )


def test_system_info_table_and_json(daemon: Daemon) -> None:
    table = bootlab(daemon, "system", "info")
    assert table.returncode == 0, table.stderr
    assert "profile:" in table.stdout and "CPU only" in table.stdout
    document = json.loads(bootlab(daemon, "system", "info", "--json").stdout)
    assert document["profile"]["gpu_count"] == 0


def test_status_reports_systemd_trouble_as_a_warning_not_a_crash(daemon: Daemon) -> None:
    # Here systemd is not PID 1: the services cannot be read, the rest still answers.
    result = bootlab(daemon, "status")
    assert result.returncode == 0, result.stderr
    assert "GPU lock:" in result.stdout and "free" in result.stdout
    assert "Traceback" not in result.stderr


def test_auth_status_lists_registries_never_secrets(daemon: Daemon) -> None:
    secret = "pa55-in-a-file"
    auth_file = daemon.root / "etc/ostree/auth.json"
    auth_file.parent.mkdir(parents=True, exist_ok=True)
    token = base64.b64encode(f"robot:{secret}".encode()).decode()
    auth_file.write_text(json.dumps({"auths": {"quay.io": {"auth": token}}}))
    table = bootlab(daemon, "auth", "status")
    assert "quay.io" in table.stdout and "robot" in table.stdout
    as_json = bootlab(daemon, "auth", "status", "--json").stdout
    assert json.loads(as_json)["registries"][0]["bootc"] is True
    for text in (table.stdout, table.stderr, as_json):
        assert secret not in text and token not in text


def test_login_never_takes_the_password_from_arguments(daemon: Daemon) -> None:
    for flag in ("-p", "--password"):
        result = bootlab(daemon, "login", "-u", "x", flag, "secret", "quay.io")
        assert result.returncode == 2
    no_tty = bootlab(daemon, "login", "-u", "x", "quay.io", stdin="")
    assert no_tty.returncode == 2 and "--password-stdin" in no_tty.stderr


def test_login_to_unreachable_registry_saves_nothing(daemon: Daemon) -> None:
    result = bootlab(
        daemon,
        "login",
        "--tls-verify=false",
        "--password-stdin",
        "-u",
        "u",
        "127.0.0.1:9",
        stdin="pw\n",
    )
    assert result.returncode == 5 and "not reachable" in result.stderr
    assert not (daemon.root / "root/.config/containers/auth.json").exists()


def test_config_errors_exit_non_zero_with_file_and_line(daemon: Daemon) -> None:
    config = daemon.root / "etc/bootlab/config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("serve:\n  port: high\n")
    try:
        result = bootlab(daemon, "config", "show")
        assert result.returncode == 1
        assert f"{config}:2: serve.port" in result.stderr and "hint:" in result.stderr
    finally:
        config.unlink()
    shown = bootlab(daemon, "config", "show")
    assert shown.returncode == 0 and "backend: auto" in shown.stdout


def test_daemon_not_running_and_permission_denied(tmp_path: Path) -> None:
    missing = bootlab(None, "status", env={"BOOTLAB_SOCKET": str(tmp_path / "none.sock")})
    assert missing.returncode == 69 and "bootlabd is not running" in missing.stderr
    locked = tmp_path / "locked.sock"
    # A socket we may not connect to, as a user outside the bootlab group meets it.
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(locked))
    listener.listen()
    os.chmod(locked, 0)
    try:
        result = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                sys.executable,
                "-m",
                "bootlab.cli",
                "status",
            ],
            capture_output=True,
            text=True,
            check=False,
            env={
                **os.environ,
                "BOOTLAB_SOCKET": str(locked),
                "PYTHONPATH": str(REPO_ROOT / "appliance"),
            },
        )
        assert result.returncode == 77, result.stderr
        assert "permission denied" in result.stderr and "bootlab' group" in result.stderr
    finally:
        listener.close()
    assert stat.S_IMODE(locked.stat().st_mode) == 0


def test_gpu_run_holds_the_lock_for_the_command(tmp_path: Path) -> None:
    env = {"BOOTLAB_ROOT": str(tmp_path)}
    result = bootlab(
        None,
        "gpu",
        "run",
        "--as",
        "bench",
        "--",
        "cat",
        str(tmp_path / "run/bootlab/gpu.lock"),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["name"] == "bench"
    missing = bootlab(None, "gpu", "run", "--", "no-such-command-xyz", env=env)
    assert missing.returncode == 127 and "cannot run no-such-command-xyz" in missing.stderr


def test_bash_completion_knows_every_command() -> None:
    script = bootlab(None, "completion", "bash").stdout
    completed = subprocess.run(
        [
            "bash",
            "-c",
            script + "\nCOMP_WORDS=(bootlab serve ''); COMP_CWORD=2; _bootlab;"
            " echo ${COMPREPLY[@]}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert set(completed) >= {"start", "stop", "status", "run"}
    top = subprocess.run(
        [
            "bash",
            "-c",
            script + "\nCOMP_WORDS=(bootlab lo); COMP_CWORD=1; _bootlab; echo ${COMPREPLY[@]}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert set(top) == {"login", "logout"}


def test_the_version_is_read_only_when_asked() -> None:
    """importlib.metadata costs 35-50 ms, which `bootlab status` must not pay."""
    version = bootlab(None, "--version")
    assert version.returncode == 0 and version.stdout.startswith("bootlab ")
    assert version.stdout.split()[1][0].isdigit()
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, bootlab.cli; print('importlib.metadata' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "appliance")},
        check=True,
    )
    assert loaded.stdout.strip() == "False"


def test_usage_errors_exit_2() -> None:
    result = bootlab(None, "serve", "dance")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_model_verbs_through_the_daemon(daemon: Daemon, tmp_path: Path) -> None:
    source = tmp_path / "tiny-model"
    source.mkdir()
    (source / "config.json").write_text("{}")
    (source / "weights.bin").write_bytes(os.urandom(300_000))
    pulled = bootlab(daemon, "model", "pull", str(source))
    assert pulled.returncode == 0, pulled.stderr
    assert "tiny-model: 293.0 KiB" in pulled.stdout
    listed = json.loads(bootlab(daemon, "model", "list", "--json").stdout)
    assert [m["name"] for m in listed["models"]] == ["tiny-model"]
    assert listed["store_bytes"] >= 300_000
    inspected = bootlab(daemon, "model", "inspect", "tiny-model")
    assert "weights.bin" in inspected.stdout and "sha256:" in inspected.stdout
    model_dir = Path(
        json.loads(bootlab(daemon, "model", "inspect", "tiny-model", "--json").stdout)["path"]
    )
    assert (model_dir / "weights.bin").read_bytes() == (source / "weights.bin").read_bytes()
    assert bootlab(daemon, "model", "verify", "tiny-model").returncode == 0
    # Someone edits a file in the model directory: verify notices, exit 7.
    blob = model_dir / "config.json"
    blob.chmod(0o644)
    blob.write_text('{"changed": true}')
    broken = bootlab(daemon, "model", "verify", "tiny-model")
    assert broken.returncode == 7 and "content changed" in broken.stderr
    assert bootlab(daemon, "model", "remove", "tiny-model").returncode == 0
    gc = json.loads(bootlab(daemon, "model", "gc", "--json").stdout)
    assert gc["blobs"] == 2 and gc["snapshots"] == 1
    missing = bootlab(daemon, "model", "inspect", "tiny-model")
    assert missing.returncode == 6 and "no model named 'tiny-model'" in missing.stderr


def test_model_pull_errors_are_clear(daemon: Daemon) -> None:
    bad_name = bootlab(daemon, "model", "pull", "--name", "a/b", "/nonexistent/x")
    assert bad_name.returncode == 2 and "not a model name" in bad_name.stderr
    missing = bootlab(daemon, "model", "pull", "/nonexistent/model-dir")
    assert missing.returncode == 2 and "neither a model reference nor a path" in missing.stderr
    unreachable = bootlab(daemon, "model", "pull", "docker://127.0.0.1:9/a/b:1")
    assert unreachable.returncode == 5 and "not reachable" in unreachable.stderr
    for result in (bad_name, missing, unreachable):
        assert "Traceback" not in result.stderr


def test_serve_start_options_reach_the_api(daemon: Daemon) -> None:
    """Here systemd is not PID 1, so the start itself fails; the options must get that far
    (an unknown field would be refused first, with exit 2)."""
    result = bootlab(
        daemon,
        "serve",
        "start",
        "tiny",
        "--port",
        "9000",
        "--backend",
        "llama-cpp",
        "--max-model-len",
        "512",
    )
    assert result.returncode not in (0, 2), result.stderr
    assert "invalid request body" not in result.stderr
    override = json.loads((daemon.root / "run/bootlab/serve.override.json").read_text())
    assert override == {"model": "tiny", "port": 9000, "backend": "llama-cpp", "max_model_len": 512}
    bad = bootlab(daemon, "serve", "start", "a/b")
    assert bad.returncode == 2 and "not a model name" in bad.stderr


def test_train_start_takes_a_job_file_checked_with_its_lines(
    daemon: Daemon, tmp_path: Path
) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("model: tiny\nphases:\n  - name: knowledge\n    data: k\n    epoch: 2\n")
    refused = bootlab(daemon, "train", "start", "--job", str(job))
    assert refused.returncode == 2, refused.stderr
    assert f"{job}:5: phases.0.epoch: unknown setting (did you mean 'epochs'?)" in refused.stderr
    assert "Traceback" not in refused.stderr
    job.write_text("train:\n  model: tiny\n  phases:\n    - {name: knowledge, data: k}\n")
    # Here systemd is not PID 1, so the start itself fails after the job is kept.
    started = bootlab(daemon, "train", "start", "--job", str(job))
    assert started.returncode not in (0, 2, 78), started.stderr
    override = json.loads((daemon.root / "var/lib/bootlab/train.override.json").read_text())
    assert override["phases"] == [{"name": "knowledge", "data": "k"}]
    assert override["data"] is None
    serve_only = bootlab(daemon, "serve", "start", "--job", str(job))
    assert serve_only.returncode == 2


def test_data_generate_is_a_job_that_makes_datasets(daemon: Daemon, tmp_path: Path) -> None:
    from taxonomy_data import taxonomy_with_documents
    from teacher_server import teacher_server

    tree = taxonomy_with_documents(tmp_path)
    with teacher_server() as teacher:
        made = bootlab(
            daemon,
            "data",
            "generate",
            str(tree),
            "--name",
            "policies",
            "--all",
            "--endpoint",
            teacher.url,
            "--model",
            "teacher",
            "--rounds",
            "1",
            "--json",
        )
    assert made.returncode == 0, made.stderr
    names = sorted(d["name"] for d in json.loads(made.stdout))
    assert names == ["policies-knowledge", "policies-skills"]
    listed = {d["name"] for d in json.loads(bootlab(daemon, "data", "list", "--json").stdout)}
    assert set(names) <= listed
    nothing = bootlab(daemon, "data", "generate", str(tree), "--name", "x", "--all")
    assert nothing.returncode == 78 and "nothing is being served" in nothing.stderr
    assert "Traceback" not in nothing.stderr


def test_data_verbs_through_the_daemon(daemon: Daemon, tmp_path: Path) -> None:
    good = tmp_path / "skills.jsonl"
    line = json.dumps(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    )
    good.write_text(line + "\n" + line + "\n")
    imported = bootlab(daemon, "data", "import", str(good))
    assert imported.returncode == 0 and "skills: 2 samples, valid" in imported.stdout
    listed = json.loads(bootlab(daemon, "data", "list", "--json").stdout)
    assert "skills" in [d["name"] for d in listed]  # the daemon is shared: others too
    assert "skills" in bootlab(daemon, "data", "inspect", "skills").stdout
    bad = tmp_path / "broken.jsonl"
    bad.write_text(line + "\n{oops\n")
    refused = bootlab(daemon, "data", "import", str(bad))
    assert refused.returncode == 65 and f"{bad}:2: not valid JSON" in refused.stderr
    missing = bootlab(daemon, "data", "inspect", "nope")
    assert missing.returncode == 6
