"""The RHEL AI workflow end to end on CPU: a taxonomy, synthetic data from a teacher (a run
stopped half-way and continued, ending with the full set and no duplicates), two-phase
training on it (knowledge, then skills), then evaluation of the base and the trained model
on the generated knowledge: the trained model must do better. The teacher and judge is a
local server in the real OpenAI format (the tiny model does not follow instructions)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from bootlab import datasets, taxonomy
from bootlab.paths import Paths
from bootlab.sdg.generate import Settings, check, generate, tasks
from bootlab.sdg.sources import from_taxonomy
from bootlab.sdg.teacher import Teacher
from bootlab.store.fetch import Progress
from bootlab.store.layout import model_store
from bootlab.store.sources import local
from taxonomy_data import taxonomy_with_documents
from teacher_server import teacher_server
from tiny_model import ML_VENV, tiny_model

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


@dataclass
class StopHalfWay(Progress):
    """Progress that asks the run to stop once it is `at` tasks in."""

    at: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)

    def add(self, count: int, *, fetched: bool) -> None:
        super().add(count, fetched=fetched)
        if self.done >= self.at:
            self.stopping.set()


def appliance(tmp_path: Path) -> Paths:
    paths = Paths(tmp_path / "root")
    paths.ml_venv.parent.mkdir(parents=True)
    paths.ml_venv.symlink_to(ML_VENV, target_is_directory=True)
    hf, _ = tiny_model()
    local.pull(str(hf), "tiny", model_store(paths), progress=Progress())
    return paths


def generate_stopped_and_continued(tree: Path, run_dir: Path, teacher_url: str) -> Path:
    """Generation stopped half-way, then run again: the rest only, then the whole set."""
    settings = Settings(rounds=4, pairs_per_request=3, concurrency=4, teacher_context=256)
    leaves = from_taxonomy(taxonomy.leaves(tree), run_dir / "documents")
    planned = tasks(leaves, settings)
    progress = StopHalfWay(at=len(planned) // 2)
    teacher = Teacher(teacher_url, "teacher")
    generate(leaves, teacher, run_dir, settings, progress=progress, stopping=progress.stopping)
    finished = len((run_dir / "progress.jsonl").read_text().splitlines())
    assert 0 < finished < len(planned), "the run was not stopped half-way"
    outcome = generate(leaves, teacher, run_dir, settings)
    check(outcome, run_dir)
    assert len((run_dir / "progress.jsonl").read_text().splitlines()) == len(planned)
    assert outcome.knowledge is not None and outcome.skills is not None
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
    paths = appliance(tmp_path)
    tree = taxonomy_with_documents(tmp_path)
    with teacher_server() as teacher:
        run_dir = generate_stopped_and_continued(tree, tmp_path / "sdg", teacher.url)
        knowledge = [
            json.loads(line) for line in (run_dir / "knowledge.jsonl").read_text().splitlines()
        ]
        questions = [s["messages"][1]["content"] for s in knowledge]
        assert len(questions) == len(set(questions))  # no duplicates across the two runs
        datasets.import_file(paths.state, run_dir / "knowledge.jsonl", "lab-knowledge")
        datasets.import_file(paths.state, run_dir / "skills.jsonl", "lab-skills")
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
