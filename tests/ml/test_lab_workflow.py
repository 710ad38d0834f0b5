"""The RHEL AI workflow end to end on CPU: a taxonomy, synthetic data from a teacher (a
daemon job killed half-way and run again, ending with the full set and no duplicates), two-phase
training on it (knowledge, then skills), then evaluation of the base and the trained model
on the generated knowledge: the trained model must do better. The teacher and judge is a
local server in the real OpenAI format (the tiny model does not follow instructions)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from bootlab import taxonomy
from bootlab.paths import Paths
from bootlab.sdg.generate import Settings, tasks
from bootlab.sdg.sources import from_taxonomy

from tests.support.appliance_daemon import running_daemon
from tests.support.taxonomy_data import taxonomy_with_documents
from tests.support.teacher_server import Behaviour, TeacherServer, teacher_server
from tests.support.tiny_model import appliance_with_tiny_model

pytestmark = pytest.mark.ml
REPO_ROOT = Path(__file__).resolve().parents[2]


def bootlab(paths: Paths, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bootlab.cli", *args],
        env={
            **os.environ,
            "BOOTLAB_ROOT": str(paths.root),
            "PYTHONPATH": str(REPO_ROOT / "appliance"),
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


def appliance(root: Path) -> Paths:
    return appliance_with_tiny_model(root)


def generate_killed_and_continued(tree: Path, root: Path, teacher: TeacherServer) -> Path:
    """`bootlab data generate` as a daemon job; the daemon killed (SIGKILL) half-way and
    started again; the same command again: the rest only, then the whole set."""
    rounds = 8
    leaves = from_taxonomy(taxonomy.leaves(tree), root / "scratch-documents")
    planned = len(
        tasks(leaves, Settings(rounds=rounds, teacher_context=Settings().teacher_context))
    )
    run_dir = root / "var/lib/bootlab/sdg/lab"
    command = (
        "data",
        "generate",
        str(tree),
        "--name",
        "lab",
        "--all",
        "--endpoint",
        teacher.url,
        "--model",
        "teacher",
        "--rounds",
        str(rounds),
        "--concurrency",
        "4",
        "--json",
    )
    with running_daemon(root=root) as daemon:
        client = subprocess.Popen(
            [sys.executable, "-m", "bootlab.cli", *command, "-q"],
            env={**daemon.env(), "PYTHONPATH": str(REPO_ROOT / "appliance")},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 300
        progress = run_dir / "progress.jsonl"
        while time.monotonic() < deadline:
            done = progress.read_text().count("\n") if progress.exists() else 0
            if done >= planned // 2:
                break
            time.sleep(0.01)
        daemon.process.kill()
        daemon.process.wait()
        client.wait(60)
    finished = len(progress.read_text().splitlines())
    assert 0 < finished < planned, "the run was not killed half-way"
    asked = len(teacher.behaviour.requests)
    with running_daemon(root=root) as daemon:
        made = subprocess.run(
            [sys.executable, "-m", "bootlab.cli", *command],
            env={**daemon.env(), "PYTHONPATH": str(REPO_ROOT / "appliance")},
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
    assert made.returncode == 0, made.stderr[-3000:]
    names = sorted(d["name"] for d in json.loads(made.stdout))
    assert names == ["lab-knowledge", "lab-skills"]
    # Only what had not finished was asked again (what was in flight at the kill, too).
    again = len(teacher.behaviour.requests) - asked
    assert planned - finished <= again <= planned - finished + 4
    assert len(progress.read_text().splitlines()) == planned
    return run_dir


def train_two_phases(paths: Paths, select_with: Path) -> None:
    """`bootlab train run` as the unit runs it (no NOTIFY_SOCKET: nobody to tell)."""
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text(
        "train:\n  model: tiny\n  output: tiny-lab\n  held_out: 0\n"
        "  phases:\n"
        "    - {name: knowledge, data: lab-knowledge, epochs: 12, learning_rate: 3.0e-3,"
        " effective_batch_size: 8}\n"
        "    - {name: skills, data: lab-skills, epochs: 2, learning_rate: 1.0e-3,"
        " effective_batch_size: 8}\n"
        "  max_seq_len: 256\n  max_batch_len: 1024\n"
        f"  select_with: {select_with}\n"
    )
    trained = bootlab(paths, "train", "run")
    assert trained.returncode == 0, trained.stderr[-3000:]


def choice_benchmark(knowledge: list[dict[str, object]], target: Path) -> Path:
    """What the knowledge data taught, as multiple choice: the right answer against three
    answers to other questions."""
    rng = random.Random(0)  # noqa: S311 - a reproducible benchmark
    questions = [s["messages"][1]["content"] for s in knowledge]  # type: ignore[index]
    answers = [s["messages"][2]["content"] for s in knowledge]  # type: ignore[index]
    lines = []
    for index, question in enumerate(questions[:40]):
        choices = rng.sample([a for a in answers if a != answers[index]], 3)
        position = rng.randrange(4)
        choices.insert(position, answers[index])
        lines.append(json.dumps({"question": question, "choices": choices, "answer": position}))
    target.write_text("\n".join(lines) + "\n")
    return target


def test_taxonomy_to_data_to_training_to_evaluation(tmp_path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="bl-", dir="/tmp") as short:  # socket path limit
        run_workflow(Path(short), tmp_path)


def run_workflow(root: Path, tmp_path: Path) -> None:
    paths = appliance(root)
    tree = taxonomy_with_documents(tmp_path, rules=200)  # chunks enough for ~100 pairs
    with teacher_server(Behaviour(delay_s=0.05)) as teacher:
        run_dir = generate_killed_and_continued(tree, root, teacher)
        knowledge = [
            json.loads(line) for line in (run_dir / "knowledge.jsonl").read_text().splitlines()
        ]
        questions = [s["messages"][1]["content"] for s in knowledge]
        assert len(questions) == len(set(questions))  # no duplicates across the two runs
        bench = choice_benchmark(knowledge, tmp_path / "bench.jsonl")
        # A few of its items pick the epochs (each epoch is scored on them: keep it short).
        select = tmp_path / "select.jsonl"
        select.write_text("".join(bench.read_text().splitlines(keepends=True)[:8]))
        train_two_phases(paths, select)
        # Each phase's best epoch was picked by the benchmark, not by loss.
        result = json.loads((paths.state / "checkpoints/tiny-lab/result.json").read_text())
        best = result["best"]["knowledge"]
        assert best["metric"] == "benchmark_accuracy"
        # Checkpoints against each other: the first epoch's candidate and the best one.
        first_epoch = paths.state / "checkpoints/tiny-lab/candidates/knowledge-e1"
        branch = bootlab(
            paths,
            "model",
            "evaluate",
            str(first_epoch),
            "--against",
            best["path"],
            "--tasks",
            str(select),
            "--json",
        )
        assert branch.returncode == 0, branch.stderr[-3000:]
        early, chosen = json.loads(branch.stdout)
        assert chosen["score"] == pytest.approx(best["score"])
        assert chosen["score"] >= early["score"]
        compared = bootlab(
            paths,
            "model",
            "evaluate",
            "tiny",
            "--against",
            "tiny-lab",
            "--tasks",
            str(bench),
            "--json",
        )
        assert compared.returncode == 0, compared.stderr[-3000:]
        base, tuned = json.loads(compared.stdout)
        assert (base["kind"], tuned["kind"]) == ("choice", "choice")
        assert tuned["score"] >= base["score"] + 0.1, (base["score"], tuned["score"])

        # Judged, on the taxonomy's own questions (the judge: the same local teacher).
        judged = bootlab(
            paths,
            "model",
            "evaluate",
            "tiny-lab",
            "--taxonomy",
            str(tree),
            "--judge-endpoint",
            teacher.url,
            "--judge-model",
            "teacher",
            "--max-new-tokens",
            "8",
            "--json",
        )
    assert judged.returncode == 0, judged.stderr[-3000:]
    result = json.loads(judged.stdout)[0]
    assert result["kind"] == "judged" and result["items"] > 0
    assert 1 <= result["score"] <= 10
    table = bootlab(paths, "model", "evaluate", "tiny", "--tasks", str(bench))
    assert "choice" in table.stdout and "%" in table.stdout
