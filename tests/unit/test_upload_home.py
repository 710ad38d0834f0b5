"""Files in a 0700 home, as on RHEL, with bootlabd as its unit runs it: root without a single
capability (setpriv drops them all), so it cannot enter the home. The CLI reads the files and
uploads them: pull, import and generate work; git runs on the daemon's own copy of a
repository someone else owns; a file the caller cannot read is refused by the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.appliance_daemon import REPO_ROOT, Daemon, running_daemon

pytestmark = pytest.mark.unit

USER = 1000  # the home's owner; no name needed
NO_CAPS = ("setpriv", "--bounding-set=-all", "--inh-caps=-all")


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv (util-linux)")
    with running_daemon(wrapper=NO_CAPS) as running:
        yield running


def bootlab(daemon: Daemon, *args: str, as_user: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**daemon.env(), "PYTHONPATH": str(REPO_ROOT / "appliance")}
    # The user cannot run the venv's interpreter (it lives under /root): the CLI needs the
    # standard library only up to the refusal tested here.
    command = [sys.executable, "-m", "bootlab.cli", *args]
    if as_user:
        command = ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--clear-groups"]
        command += ["/usr/bin/python3", "-m", "bootlab.cli", *args]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def generate(daemon: Daemon, taxonomy: Path, name: str) -> subprocess.CompletedProcess[str]:
    """`data generate` of the changed leaves (against main) through a test teacher."""
    from tests.support.teacher_server import teacher_server

    with teacher_server() as teacher:
        options = ("--endpoint", teacher.url, "--model", "teacher", "--rounds", "1", "--json")
        made = bootlab(daemon, "data", "generate", str(taxonomy), "--name", name, *options)
    assert made.returncode == 0, made.stderr
    return made


def give(path: Path) -> None:
    for found in [path, *path.rglob("*")]:
        os.lchown(found, USER, USER)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bootlab.taxonomy.init import SKILL_LEAF

    from tests.support.taxonomy_data import git, taxonomy_with_documents

    base = tmp_path_factory.mktemp("home-files")
    # The document's repository stays where the daemon can clone it; the taxonomy goes home.
    tree = taxonomy_with_documents(base / "elsewhere")
    home = base / "alice"
    home.mkdir()
    tree = Path(shutil.move(tree, home / "taxonomy"))
    git("add", str(SKILL_LEAF), cwd=tree)
    git("commit", "-q", "-m", "the skill", cwd=tree)  # the knowledge leaf is new: untracked
    model = home / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "weights.safetensors").write_bytes(os.urandom(200_000))
    line = json.dumps(
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    )
    (home / "x.jsonl").write_text(line + "\n")
    give(home)
    os.chmod(home, 0o700)
    return home


def test_the_daemon_really_cannot_enter_the_home(daemon: Daemon, home: Path) -> None:
    status = Path(f"/proc/{daemon.process.pid}/status").read_text()
    assert "CapEff:\t0000000000000000" in status and "Uid:\t0\t" in status
    probe = subprocess.run([*NO_CAPS, "ls", str(home)], capture_output=True, text=True, check=False)
    assert probe.returncode != 0 and "Permission denied" in probe.stderr


def test_pull_and_import_from_the_home_as_root_with_sudo(daemon: Daemon, home: Path) -> None:
    pulled = bootlab(daemon, "model", "pull", str(home / "model"), "--json")
    assert pulled.returncode == 0, pulled.stderr
    model = json.loads(pulled.stdout)["model"]
    assert model["name"] == "model" and model["source"] == f"file://{home / 'model'}"
    assert {f["path"] for f in model["files"]} == {"config.json", "weights.safetensors"}
    imported = bootlab(daemon, "data", "import", str(home / "x.jsonl"), "--json")
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["source"] == str(home / "x.jsonl")
    assert list((daemon.root / "var/lib/bootlab/uploads").iterdir()) == []  # used, removed


def test_generate_reads_git_in_its_own_copy_of_the_users_repository(
    daemon: Daemon, home: Path
) -> None:
    made = generate(daemon, home / "taxonomy", "home")
    assert "dubious ownership" not in made.stderr
    # Only the leaf git calls new (the committed skill is not regenerated).
    assert [d["name"] for d in json.loads(made.stdout)] == ["home-knowledge"]


def test_the_caller_cannot_send_what_they_cannot_read(daemon: Daemon, home: Path) -> None:
    secret = daemon.root.parent / f"{daemon.root.name}-secret.jsonl"
    secret.write_text("root's\n")
    secret.chmod(0o600)
    try:
        refused = bootlab(daemon, "data", "import", str(secret), as_user=True)
    finally:
        secret.unlink()
    assert refused.returncode == 77, refused.stderr
    assert f"cannot read {secret}: permission denied" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_taxonomy_inside_a_bigger_repository_and_a_linked_file(
    daemon: Daemon, home: Path
) -> None:
    """The repository's .git is above the taxonomy: it is sent along (the diff needs it),
    and only the taxonomy's folders with it. A JSONL file reached through a link keeps the
    name it was given."""
    from tests.support.taxonomy_data import git

    project = home / "project"
    (project / "other").mkdir(parents=True)
    (project / "other" / "big.bin").write_bytes(os.urandom(100_000))  # no taxonomy file
    shutil.copytree(home / "taxonomy", project / "tax", ignore=shutil.ignore_patterns(".git"))
    git("init", "-q", "-b", "main", cwd=project)
    git("add", ".", cwd=project)
    git("commit", "-q", "-m", "all", cwd=project)
    leaf = next((project / "tax" / "compositional_skills").rglob("qna.yaml"))
    leaf.write_text(leaf.read_text() + "# changed\n")  # the one leaf changed against main
    (home / "link.jsonl").symlink_to(home / "x.jsonl")
    give(home)
    made = generate(daemon, project / "tax", "sub")
    assert [d["name"] for d in json.loads(made.stdout)] == ["sub-skills"]
    linked = bootlab(daemon, "data", "import", str(home / "link.jsonl"), "--json")
    assert linked.returncode == 0, linked.stderr
    assert json.loads(linked.stdout)["name"] == "link"
