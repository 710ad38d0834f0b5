"""Files in a 0700 home on a real host: an admin (group bootlab) pulls a model, imports a
dataset and generates data from a taxonomy that all live in their home, and root does the
same with the user's paths (sudo-style), while bootlabd keeps its sandbox (no capabilities,
ProtectHome=read-only): the CLI reads the files and uploads them; the daemon opens none.

The dev image has no git: the taxonomy here is not a repository (every leaf counts as new),
and git in the daemon's copy of a user's repository is tested in tests/unit/test_upload_home.py.
The teacher is tests/support/teacher_server.py, run in the guest on 127.0.0.1."""

from __future__ import annotations

import json
import shlex

import pytest

from tests.support.infra import REPO_ROOT
from tests.support.vm import Guest

pytestmark = pytest.mark.vm

USER = "alice"
HOME = f"/home/{USER}"
LINE = json.dumps(
    {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
)
# Run as `python3 /root/teacher.py`, so /root (where teacher_server.py is put) is on its path.
TEACHER = """
import time
from teacher_server import teacher_server
with teacher_server() as teacher:
    open("/root/teacher.url.part", "w").write(teacher.url)
    __import__("os").rename("/root/teacher.url.part", "/root/teacher.url")
    time.sleep(3600)
"""


@pytest.fixture(scope="module")
def home(guest: Guest) -> str:
    """An admin with a 0700 home holding a model, a JSONL file and a taxonomy."""
    guest.ssh(f"id {USER} || useradd --create-home --groups bootlab {USER}")
    guest.ssh(f"chmod 0700 {HOME}")
    as_user = (
        "mkdir -p ~/model && echo '{}' > ~/model/config.json"
        " && head -c 300000 /dev/urandom > ~/model/model.safetensors"
        f" && printf '%s\\n' {shlex.quote(LINE)} {shlex.quote(LINE)} > ~/x.jsonl"
        " && bootlab taxonomy init ~/taxonomy && rm -r ~/taxonomy/knowledge"
    )
    guest.ssh(as_user, user=USER)
    return HOME


def sandbox(guest: Guest) -> str:
    return guest.ssh("systemctl show bootlabd -p CapabilityBoundingSet,ProtectHome").stdout


def test_the_sandbox_keeps_the_daemon_out_of_the_home(guest: Guest, home: str) -> None:
    guest.ssh("bootlab status")  # the socket starts the daemon
    assert sandbox(guest).split() == ["CapabilityBoundingSet=", "ProtectHome=read-only"]
    # Root without capabilities, as bootlabd runs, cannot enter the home.
    probe = guest.ssh(f"setpriv --bounding-set=-all --inh-caps=-all ls {home}", check=False)
    assert probe.returncode != 0 and "Permission denied" in probe.stderr


def test_the_user_pulls_and_imports_from_their_home(guest: Guest, home: str) -> None:
    pulled = guest.ssh("bootlab model pull ~/model --json", user=USER)
    model = json.loads(pulled.stdout)["model"]
    assert model["name"] == "model" and model["source"] == f"file://{home}/model"
    assert {f["path"] for f in model["files"]} == {"config.json", "model.safetensors"}
    imported = json.loads(guest.ssh("bootlab data import ~/x.jsonl --json", user=USER).stdout)
    assert imported["name"] == "x" and imported["samples"] == 2
    assert imported["source"] == f"{home}/x.jsonl"


def test_root_pulls_and_imports_the_users_paths(guest: Guest, home: str) -> None:
    guest.ssh(f"bootlab model pull {home}/model --name model-root")
    guest.ssh(f"bootlab data import {home}/x.jsonl --name x-root")
    names = {m["name"] for m in json.loads(guest.ssh("bootlab model list --json").stdout)["models"]}
    assert "model-root" in names
    datasets = {d["name"] for d in json.loads(guest.ssh("bootlab data list --json").stdout)}
    assert "x-root" in datasets


def test_the_user_generates_from_a_taxonomy_in_their_home(guest: Guest, home: str) -> None:
    server = (REPO_ROOT / "tests" / "support" / "teacher_server.py").read_text()
    guest.ssh("cat > /root/teacher_server.py", input_text=server)
    guest.ssh("cat > /root/teacher.py", input_text=TEACHER)
    guest.ssh(
        "rm -f /root/teacher.url;"
        " setsid python3 /root/teacher.py </dev/null >/root/teacher.log 2>&1 &"
    )
    url = guest.ssh(
        "for i in $(seq 120); do [ -s /root/teacher.url ] && break; sleep 0.5; done;"
        " cat /root/teacher.url"
    ).stdout.strip()
    assert url.startswith("http://127.0.0.1:"), guest.ssh("cat /root/teacher.log").stdout
    made = guest.ssh(
        f"bootlab data generate ~/taxonomy --name home --endpoint {url} --model teacher"
        " --rounds 1 --concurrency 2 --json",
        user=USER,
    )
    assert [d["name"] for d in json.loads(made.stdout)] == ["home-skills"]
    assert sandbox(guest).split() == ["CapabilityBoundingSet=", "ProtectHome=read-only"]
    # Every upload was used and removed.
    assert guest.ssh("ls -A /var/lib/bootlab/uploads 2>/dev/null; true").stdout.strip() == ""
