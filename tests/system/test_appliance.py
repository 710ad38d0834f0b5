"""The appliance booted for real: systemd as PID 1, the API socket, registry login for podman
and bootc, and serve/train that never run together."""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.hub import V1, V1_FILES, Hub, sha256_hex
from tests.support.infra import REPO_ROOT, Booted, Registry, sh

pytestmark = pytest.mark.system

OUR_UNITS = sorted(path.name for path in (REPO_ROOT / "units").iterdir() if path.is_file())


def status(machine: Booted) -> dict[str, object]:
    result = machine.exec("bootlab", "status", "--json")
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_boots_to_running_without_failed_units(booted: Booted) -> None:
    state = booted.exec("systemctl", "is-system-running", check=False).stdout.strip()
    failed = booted.exec("systemctl", "--failed", "--no-legend", "--plain").stdout
    assert state == "running", failed
    assert booted.exec("systemctl", "is-active", "bootlabd.socket").stdout.strip() == "active"
    assert booted.exec("systemctl", "is-enabled", "bootlab-upgrade-informer.timer").returncode == 0


def test_units_verify_clean(booted: Booted) -> None:
    paths = [f"/usr/lib/systemd/system/{unit}" for unit in OUR_UNITS]
    result = booted.exec("systemd-analyze", "verify", *paths, check=False)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_status_answers_through_the_socket(booted: Booted) -> None:
    document = status(booted)
    deadline = time.monotonic() + 30
    while document["profile"] == "(probing hardware)" and time.monotonic() < deadline:
        time.sleep(0.2)  # the daemon probes the GPUs in the background from its start
        document = status(booted)
    assert document["profile"] == "CPU only"
    workloads = {s["workload"]: s for s in document["services"]}
    assert set(workloads) == {"serve", "train"}
    assert workloads["serve"]["unit"] == "bootlab-serve.service"
    # Socket activation started the daemon, which said READY.
    assert booted.exec("systemctl", "is-active", "bootlabd.service").stdout.strip() == "active"
    socket_mode = booted.exec("stat", "-c", "%a %U %G", "/run/bootlab/bootlab.sock").stdout
    assert socket_mode.split() == ["660", "root", "bootlab"]
    # Type=notify: READY and STATUS came from the daemon itself.
    status_text = booted.exec("systemctl", "show", "-p", "StatusText", "--value", "bootlabd")
    assert status_text.stdout.strip() == "answering on /run/bootlab/bootlab.sock"
    # Structured journal fields (systemd-python), not just text on stderr.
    entries = booted.exec("journalctl", "-u", "bootlabd", "-o", "json", "--no-pager").stdout
    ready = [json.loads(line) for line in entries.splitlines() if '"bootlabd ready"' in line]
    assert (
        ready and ready[0]["LOGGER"] == "bootlabd" and ready[0]["SYSLOG_IDENTIFIER"] == "bootlabd"
    )
    assert ready[0]["CODE_FUNC"] == "main" and ready[0]["PRIORITY"] == "6"


def test_non_admin_is_refused_and_group_member_is_not(booted: Booted) -> None:
    booted.exec("sh", "-c", "id alice || useradd --create-home alice")
    booted.exec("sh", "-c", "id bob || useradd --create-home --groups bootlab bob")
    refused = booted.exec("bootlab", "status", user="alice", check=False)
    assert refused.returncode == 77, refused.stderr
    assert "permission denied" in refused.stderr and "bootlab" in refused.stderr
    assert "Traceback" not in refused.stderr
    allowed = booted.exec("bootlab", "status", "--json", user="bob", check=False)
    assert allowed.returncode == 0, allowed.stderr
    # The store is readable by the group: root's files must stay root's. The CLI reads what
    # it uploads with bob's rights, so it cannot send them.
    smuggle = booted.exec("bootlab", "model", "pull", "/etc/shadow", user="bob", check=False)
    assert smuggle.returncode == 77, smuggle.stderr
    assert "cannot read /etc/shadow: permission denied" in smuggle.stderr


def _login(machine: Booted, registry: Registry, password: str) -> subprocess.CompletedProcess[str]:
    return machine.exec(
        "bootlab",
        "login",
        "--tls-verify=false",
        "--password-stdin",
        "-u",
        registry.username,
        registry.host,
        input_text=password + "\n",
        check=False,
    )


def test_login_serves_podman_and_bootc_and_never_leaks(booted: Booted, registry: Registry) -> None:
    # Something to pull: a tiny image pushed with the registry's credentials.
    sh(
        "podman",
        "build",
        "-t",
        f"{registry.host}/probe:1",
        "-f",
        "-",
        ".",
        input="FROM scratch\nLABEL probe=1\n",
        cwd="/tmp",
    )
    sh(
        "podman",
        "push",
        "--tls-verify=false",
        f"--creds={registry.username}:{registry.password}",
        f"{registry.host}/probe:1",
    )
    files = ("/root/.config/containers/auth.json", "/etc/ostree/auth.json")
    before = booted.exec("sh", "-c", f"cat {' '.join(files)} 2>/dev/null", check=False).stdout

    wrong = _login(booted, registry, "not-the-password")
    assert wrong.returncode == 4, wrong.stderr
    assert "refused the username or password" in wrong.stderr
    after = booted.exec("sh", "-c", f"cat {' '.join(files)} 2>/dev/null", check=False).stdout
    assert after == before, "a refused login changed the auth files"

    good = _login(booted, registry, registry.password)
    assert good.returncode == 0, good.stderr
    for path in files:
        assert booted.exec("stat", "-c", "%a", path).stdout.strip() == "600"
        document = json.loads(booted.exec("cat", path).stdout)
        assert registry.host in document["auths"]
    inspected = booted.exec(
        "skopeo", "inspect", "--tls-verify=false", f"docker://{registry.host}/probe:1"
    )
    assert json.loads(inspected.stdout)["Labels"]["probe"] == "1"
    # bootc reads only /etc/ostree/auth.json: prove that file alone authenticates.
    alone = booted.exec(
        "skopeo",
        "inspect",
        "--tls-verify=false",
        "--authfile",
        "/etc/ostree/auth.json",
        f"docker://{registry.host}/probe:1",
    )
    assert json.loads(alone.stdout)["Labels"]["probe"] == "1"

    listed = json.loads(booted.exec("bootlab", "auth", "status", "--json").stdout)
    entry = next(e for e in listed["registries"] if e["registry"] == registry.host)
    assert entry == {
        "registry": registry.host,
        "username": registry.username,
        "podman": True,
        "bootc": True,
    }

    journal = booted.exec("journalctl", "-o", "export", "--no-pager").stdout
    processes = booted.exec(  # what `ps -eo args` shows
        "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '", check=False
    ).stdout
    logs = booted.exec(
        "sh", "-c", "cat /var/log/*.log /var/lib/bootlab/* 2>/dev/null", check=False
    ).stdout
    for where, text in (("journal", journal), ("process list", processes), ("logs", logs)):
        assert registry.password not in text, f"the password reached the {where}"
        assert "not-the-password" not in text, f"a wrong password reached the {where}"

    out = booted.exec("bootlab", "logout", registry.host)
    assert "Removed" in out.stdout
    for path in files:
        assert registry.host not in json.loads(booted.exec("cat", path).stdout)["auths"]
    again = booted.exec("bootlab", "logout", registry.host, check=False)
    assert again.returncode == 1 and "not logged in" in again.stderr


def test_login_errors_are_clear(booted: Booted) -> None:
    down = booted.exec(
        "bootlab",
        "login",
        "--password-stdin",
        "-u",
        "x",
        "--tls-verify=false",
        "127.0.0.1:9",
        input_text="pw\n",
        check=False,
    )
    assert down.returncode == 5 and "not reachable" in down.stderr, down.stderr
    bad = booted.exec(
        "bootlab",
        "login",
        "--password-stdin",
        "-u",
        "x",
        "not a registry!",
        input_text="pw\n",
        check=False,
    )
    assert bad.returncode == 2 and "not a registry name" in bad.stderr, bad.stderr
    for result in (down, bad):
        assert "Traceback" not in result.stderr


def test_serve_refuses_clearly_when_nothing_is_configured(booted: Booted) -> None:
    booted.exec("rm", "-f", "/etc/bootlab/config.yaml")
    result = booted.exec("bootlab", "serve", "start", check=False)
    assert result.returncode == 78, result.stderr
    assert "serve.model is not set" in result.stderr and "hint:" in result.stderr
    journal = booted.exec("journalctl", "-u", "bootlab-serve", "--no-pager", "-o", "cat").stdout
    assert "serve.model is not set" in journal
    # The daemon reads unit state over D-Bus: it must agree with systemctl.
    state = json.loads(booted.exec("bootlab", "serve", "status", "--json").stdout)
    shown = booted.exec(
        "systemctl", "show", "-p", "ActiveState,Result", "bootlab-serve.service"
    ).stdout.split()
    assert sorted(shown) == [f"ActiveState={state['active']}", f"Result={state['result']}"]
    assert (state["active"], state["result"]) == ("failed", "exit-code")
    booted.exec("systemctl", "reset-failed", "bootlab-serve.service")
    state = json.loads(booted.exec("bootlab", "serve", "status", "--json").stdout)
    assert (state["active"], state["main_pid"]) == ("inactive", 0)


def test_config_init_show_and_errors(booted: Booted) -> None:
    booted.exec("rm", "-f", "/etc/bootlab/config.yaml")
    booted.exec("bootlab", "config", "init")
    shown = json.loads(booted.exec("bootlab", "config", "show", "--json").stdout)
    assert shown["config"]["serve"]["gpus"] == "auto"  # CPU only
    again = booted.exec("bootlab", "config", "init", check=False)
    assert again.returncode == 3 and "already exists" in again.stderr
    booted.write("/etc/bootlab/config.yaml", "serve:\n  port: 99999\n  modle: x\n")
    broken = booted.exec("bootlab", "config", "show", check=False)
    assert broken.returncode == 1
    assert "/etc/bootlab/config.yaml:2: serve.port" in broken.stderr, broken.stderr
    assert "did you mean 'model'" in broken.stderr
    assert status(booted)["config_error"]
    booted.exec("rm", "-f", "/etc/bootlab/config.yaml")


@pytest.fixture
def gpu_holders(booted: Booted) -> Iterator[Booted]:
    """The dev image has no vLLM or llama.cpp: for a test, the units run a real GPU-lock
    holder instead, so Conflicts= and the lock are what is tested. Undone afterwards."""
    for workload in ("serve", "train"):
        booted.write(
            f"/run/systemd/system/bootlab-{workload}.service.d/test.conf",
            textwrap.dedent(f"""\
                [Service]
                Type=exec
                WatchdogSec=0
                ExecStart=
                ExecStart=/usr/bin/bootlab gpu run --as {workload} -- sleep infinity
                """),
        )
    booted.exec("systemctl", "daemon-reload")
    yield booted
    booted.exec("systemctl", "stop", "bootlab-serve", "bootlab-train")
    booted.exec(
        "rm",
        "-rf",
        "/run/systemd/system/bootlab-serve.service.d",
        "/run/systemd/system/bootlab-train.service.d",
    )
    booted.exec("systemctl", "daemon-reload")
    booted.exec("systemctl", "reset-failed", "bootlab-serve", "bootlab-train", check=False)


def _active(machine: Booted, unit: str) -> bool:
    return machine.exec("systemctl", "is-active", unit, check=False).stdout.strip() == "active"


def test_serve_then_train_leaves_only_train(gpu_holders: Booted) -> None:
    booted = gpu_holders
    booted.exec("systemctl", "start", "bootlab-serve")
    assert _active(booted, "bootlab-serve") and not _active(booted, "bootlab-train")
    assert status(booted)["gpu_holder"].startswith("serve")  # type: ignore[union-attr]
    booted.exec("systemctl", "start", "bootlab-train")
    assert _active(booted, "bootlab-train") and not _active(booted, "bootlab-serve")
    assert status(booted)["gpu_holder"].startswith("train")  # type: ignore[union-attr]
    # Something outside systemd cannot take the GPUs meanwhile.
    outside = booted.exec("bootlab", "gpu", "run", "--", "true", check=False)
    assert outside.returncode == 75 and "training is running" in outside.stderr
    booted.exec("systemctl", "stop", "bootlab-train")


CONCURRENT = """
import concurrent.futures, json, subprocess, threading, time
from pathlib import Path
from bootlab import client
from bootlab.errors import BootlabError

socket = Path("/run/bootlab/bootlab.sock")
both = []
done = threading.Event()

def watch():
    while not done.is_set():
        states = subprocess.run(
            ["systemctl", "is-active", "bootlab-serve", "bootlab-train"],
            capture_output=True, text=True).stdout.split()
        if states == ["active", "active"]:
            both.append(time.time())

def start(i):
    workload = ("serve", "train")[i % 2]
    try:
        answer = client.call(socket, "POST", f"/v1/services/{workload}/start")
        return "queued" if answer["job"] else "no job: " + answer["active"]
    except BootlabError as error:
        return "error: " + error.message

watcher = threading.Thread(target=watch)
watcher.start()
with concurrent.futures.ThreadPoolExecutor(100) as pool:
    answers = list(pool.map(start, range(100)))
# Each start answered at once with its job; the jobs run on: watch until none is left.
deadline = time.monotonic() + 120
while time.monotonic() < deadline and subprocess.run(
    ["systemctl", "list-jobs", "--no-legend", "bootlab-serve.service", "bootlab-train.service"],
    capture_output=True, text=True).stdout.strip():
    time.sleep(0.2)
time.sleep(1)
done.set()
watcher.join()
print(json.dumps({"answers": answers, "both": len(both)}))
"""


def test_hundred_concurrent_starts_never_run_both(gpu_holders: Booted) -> None:
    booted = gpu_holders
    result = booted.exec("/usr/lib/bootlab/venv/bin/python", "-c", CONCURRENT)
    report = json.loads(result.stdout)
    assert report["both"] == 0
    # Every start queued a job and answered at once (systemd's start rate limit, 5 starts in
    # 10 s per unit, then fails some of those jobs: a waiting `bootlab ... start` says so).
    assert report["answers"] == ["queued"] * 100, report["answers"]
    states = [_active(booted, "bootlab-serve"), _active(booted, "bootlab-train")]
    assert states.count(True) <= 1
    # Had systemd ever started one before the other had stopped, the GPU lock would have
    # refused it, and said so in the journal.
    journal = booted.exec("journalctl", "-u", "bootlab-serve", "-u", "bootlab-train", "-o", "cat")
    assert "GPUs are in use" not in journal.stdout
    for unit in ("bootlab-serve", "bootlab-train"):
        booted.exec("systemctl", "reset-failed", unit, check=False)
    booted.exec("systemctl", "stop", "bootlab-serve", "bootlab-train")


def test_model_pull_inside_the_image_uses_the_login(
    booted: Booted, registry: Registry, tmp_path: Path
) -> None:
    """A model pushed from outside, pulled inside with the credentials `bootlab login` saved,
    lands where serving looks for it."""
    import os

    (tmp_path / "granite").mkdir()
    (tmp_path / "granite" / "config.json").write_text("{}")
    (tmp_path / "granite" / "model.gguf").write_bytes(b"GGUF" + os.urandom(5_000_000))
    reference = push_from_outside(registry, tmp_path / "granite", "granite", tmp_path)

    assert _login(booted, registry, registry.password).returncode == 0
    pulled = booted.exec("bootlab", "model", "pull", "--tls-verify=false", reference)
    assert "granite:" in pulled.stdout
    assert booted.exec("bootlab", "model", "verify", "granite").returncode == 0
    assert booted.exec("test", "-f", "/var/lib/bootlab/models/granite/model.gguf").returncode == 0
    # Preflight passes (a GGUF file, llama.cpp installed); these bytes are no real model, so
    # the server dies while loading, and `serve start` says so instead of hanging.
    booted.write("/etc/bootlab/config.yaml", "serve:\n  model: granite\n")
    refused = booted.exec("bootlab", "serve", "start", check=False)
    assert refused.returncode == 1 and "exited (code 1) while loading" in refused.stderr
    booted.exec("systemctl", "reset-failed", "bootlab-serve.service")
    booted.exec("rm", "-f", "/etc/bootlab/config.yaml")
    booted.exec("bootlab", "logout", registry.host)


def test_hf_pull_inside_the_image_uses_its_ml_stack(booted: Booted, hub: Hub) -> None:
    """The real huggingface_hub of the image's ML venv, run by the hardened daemon."""
    booted.write("/etc/bootlab/config.yaml", f"models:\n  hf_endpoint: {hub.url}\n")
    try:
        pulled = booted.exec("bootlab", "model", "pull", "--json", "hf://org/tiny@v1", check=False)
        assert pulled.returncode == 0, pulled.stderr
        model = json.loads(pulled.stdout)["model"]
        assert model["source"] == f"hf://org/tiny@{V1}"
        for path, data in V1_FILES.items():
            inside = booted.exec("sha256sum", f"/var/lib/bootlab/models/tiny/{path}").stdout
            assert inside.split()[0] == sha256_hex(data), path
        missing = booted.exec("bootlab", "model", "pull", "hf://org/nope", check=False)
        assert missing.returncode == 6 and "Traceback" not in missing.stderr
    finally:
        booted.exec("rm", "-f", "/etc/bootlab/config.yaml")


def test_serving_the_tiny_model_under_systemd(
    booted: Booted, registry: Registry, tmp_path: Path
) -> None:
    """Pull the tiny GGUF model from the registry, `systemctl start bootlab-serve` returns
    only once it answers, chat works, training's start stops it, a restart brings it back."""
    from tests.support.tiny_model import tiny_model

    _, gguf = tiny_model()
    reference = push_from_outside(registry, gguf, "tiny", tmp_path)
    assert _login(booted, registry, registry.password).returncode == 0
    booted.exec("bootlab", "model", "pull", "--tls-verify=false", reference)
    booted.write(
        "/etc/bootlab/config.yaml", "serve:\n  model: tiny\n  port: 8765\n  max_model_len: 512\n"
    )
    try:
        booted.exec("systemctl", "start", "bootlab-serve")  # returns once it answers
        models = booted.exec(
            "/usr/lib/bootlab/venv/bin/python",
            "-c",
            "import urllib.request;print(urllib.request.urlopen("
            "'http://127.0.0.1:8765/v1/models').read().decode())",
        )
        assert json.loads(models.stdout)["data"][0]["id"] == "tiny"
        answer = booted.exec("bootlab", "chat", "-q", "hello", "--max-tokens", "8")
        assert answer.stdout.strip()
        state = json.loads(booted.exec("bootlab", "serve", "status", "--json").stdout)
        assert (state["model"], state["backend"]) == ("tiny", "llama-cpp")
        assert state["endpoint"] == "http://127.0.0.1:8765/v1"
        booted.exec("systemctl", "start", "bootlab-train", check=False)  # not configured
        assert not _active(booted, "bootlab-serve")  # Conflicts= stopped serving first
        booted.exec("systemctl", "reset-failed", "bootlab-train", check=False)
        booted.exec("systemctl", "restart", "bootlab-serve")
        assert booted.exec("bootlab", "chat", "-q", "again", "--max-tokens", "4").stdout.strip()
        hung_server_is_restarted(booted)
    finally:
        booted.exec("rm", "-rf", "/run/systemd/system/bootlab-serve.service.d")
        booted.exec("systemctl", "daemon-reload")
        booted.exec("systemctl", "stop", "bootlab-serve", check=False)
        booted.exec("rm", "-f", "/etc/bootlab/config.yaml")
        booted.exec("bootlab", "logout", registry.host, check=False)


def hung_server_is_restarted(booted: Booted) -> None:
    """A hung server (stopped, still holding its port): the probes fail, the watchdog
    starves, systemd restarts the unit, and it serves again."""
    booted.write(
        "/run/systemd/system/bootlab-serve.service.d/watchdog.conf", "[Service]\nWatchdogSec=6\n"
    )
    booted.exec("systemctl", "daemon-reload")
    booted.exec("systemctl", "restart", "bootlab-serve")
    supervisor = booted.exec(
        "systemctl", "show", "-p", "MainPID", "--value", "bootlab-serve"
    ).stdout.strip()
    backend = booted.exec("cat", f"/proc/{supervisor}/task/{supervisor}/children").stdout
    booted.exec("sh", "-c", f"kill -STOP {backend.split()[0]}")
    deadline = time.monotonic() + 120  # 6 s watchdog, 30 s abort, 10 s RestartSec
    restarts = "0"
    while time.monotonic() < deadline and restarts == "0":
        time.sleep(1)
        restarts = booted.exec(
            "systemctl", "show", "-p", "NRestarts", "--value", "bootlab-serve"
        ).stdout.strip()
    assert restarts != "0", "the watchdog never restarted the hung server"
    booted.exec("systemctl", "start", "bootlab-serve")  # waits for the restart's READY
    assert booted.exec("bootlab", "chat", "-q", "back?", "--max-tokens", "4").stdout.strip()
    journal = booted.exec("journalctl", "-u", "bootlab-serve", "-o", "cat").stdout
    assert "watchdog timeout" in journal.lower()


def push_from_outside(registry: Registry, source: Path, name: str, scratch: Path) -> str:
    """A model pushed to the registry from this host (bootlab's own push): what admins
    pull inside. Returns its reference."""
    from bootlab import auth
    from bootlab.paths import Paths
    from bootlab.store.fetch import Progress
    from bootlab.store.layout import model_store
    from bootlab.store.sources import local
    from bootlab.store.sources import registry as registry_source

    outside = Paths(scratch / f"outside-{name}")
    auth.store(outside, registry.host, auth.Credentials(registry.username, registry.password))
    local.pull(str(source), name, model_store(outside), progress=Progress())
    reference = f"docker://{registry.host}/models/{name}:1"
    registry_source.push(
        name, reference, model_store(outside), outside, tls_verify=False, progress=Progress()
    )
    return reference
