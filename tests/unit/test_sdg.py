"""Synthetic data generation against a local OpenAI-compatible teacher: tasks from leaves,
parsing and filtering, concurrency, checkpointed progress (a run killed half-way continues
and ends with the full set, no duplicates, no finished task asked twice), and every kind of
teacher failure with its message and nothing lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bootlab import datasets
from bootlab.errors import BootlabError
from bootlab.sdg.generate import (
    Example,
    Leaf,
    Settings,
    check,
    chunks,
    generate,
    parse,
    tasks,
)
from bootlab.sdg.teacher import Teacher, TeacherError

from tests.support.taxonomy_data import git, taxonomy_with_documents
from tests.support.teacher_server import Behaviour, teacher_server

pytestmark = pytest.mark.unit
REPO_ROOT = Path(__file__).resolve().parents[2]

DOCUMENT = "\n\n".join(
    f"Paragraph {i}: the Pellworm lighthouse keeper logs tides, storms and passing "
    f"freighters in ledger number {i}, kept in the harbour office since {1900 + i}."
    for i in range(12)
)
KNOWLEDGE = Leaf(
    path="knowledge/history/lighthouse/qna.yaml",
    kind="knowledge",
    task="history of the Pellworm lighthouse",
    examples=tuple(
        Example(f"What does ledger {i} record?", f"Tides, storms and freighters ({i}).")
        for i in range(5)
    ),
    documents=(DOCUMENT,),
)
SKILL = Leaf(
    path="compositional_skills/writing/haiku/qna.yaml",
    kind="skill",
    task="write a haiku about the given subject",
    examples=tuple(
        Example(f"Write a haiku about {s}", f"{s} haiku")
        for s in ("rain", "snow", "wind", "tides", "stars")
    ),
)
SMALL = Settings(rounds=2, pairs_per_request=3, concurrency=4, teacher_context=256)


def test_knowledge_is_chunked_to_the_teachers_context_and_skills_are_one_task_a_round() -> None:
    assert all(len(c) <= 256 for c in chunks(DOCUMENT, 256))
    assert "".join(chunks(DOCUMENT, 256)).count("Paragraph") == 12
    planned = tasks([KNOWLEDGE, SKILL], SMALL)
    knowledge = [t for t in planned if t.leaf.kind == "knowledge"]
    assert len(knowledge) == len(chunks(DOCUMENT, 256)) * 2
    assert [t.round for t in planned if t.leaf.kind == "skill"] == [0, 1]
    assert len({t.id for t in planned}) == len(planned)
    assert [t.id for t in tasks([KNOWLEDGE, SKILL], SMALL)] == [t.id for t in planned]


def test_parse_takes_the_pairs_and_ignores_the_chatter() -> None:
    text = "Sure!\n[Question]\nWhy?\n[Answer]\nBecause.\n[End]\nnoise [Question] x [End]"
    assert parse(text) == [("Why?", "Because.")]


def test_generation_makes_training_data_that_imports(tmp_path: Path) -> None:
    with teacher_server() as teacher:
        outcome = generate(
            [KNOWLEDGE, SKILL], Teacher(teacher.url, "teacher"), tmp_path / "run", SMALL
        )
    check(outcome, tmp_path / "run")
    assert outcome.knowledge is not None and outcome.skills is not None
    planned = tasks([KNOWLEDGE, SKILL], SMALL)
    assert outcome.generated == 3 * len(planned)
    assert outcome.kept + sum(outcome.rejected.values()) == outcome.generated
    questions = [
        json.loads(line)["messages"][1]["content"]
        for path in (outcome.knowledge, outcome.skills)
        for line in path.read_text().splitlines()
    ]
    assert len(questions) == len(set(questions)) == outcome.kept
    for path, name in ((outcome.knowledge, "k"), (outcome.skills, "s")):
        assert datasets.import_file(tmp_path / "state", path, name).samples > 0


def test_a_killed_run_continues_and_never_asks_twice(tmp_path: Path) -> None:
    settings = Settings(rounds=6, pairs_per_request=3, concurrency=2, teacher_context=256)
    run = tmp_path / "run"
    script = (
        "import sys, time;"
        "from bootlab.sdg import teacher as t;"
        "slow = t.Teacher._once;"
        "t.Teacher._once = lambda self, body: (time.sleep(0.05), slow(self, body))[1];"
        "from test_sdg import KNOWLEDGE, SKILL;"
        "from bootlab.sdg.generate import Settings, generate;"
        "generate([KNOWLEDGE, SKILL], t.Teacher(sys.argv[1], 'teacher'), "
        f"__import__('pathlib').Path(sys.argv[2]), Settings(**{settings.__dict__!r}))"
    )
    with teacher_server() as teacher:
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                script,
                teacher.url,
                str(run),
            ],
            # This file imported as `test_sdg`, its helpers as `tests.support.*`.
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(
                    str(path)
                    for path in (REPO_ROOT / "appliance", REPO_ROOT / "tests" / "unit", REPO_ROOT)
                ),
            },
        )
        planned = tasks([KNOWLEDGE, SKILL], settings)
        deadline = time.monotonic() + 60
        progress = run / "progress.jsonl"
        while time.monotonic() < deadline:
            done = progress.read_text().count("\n") if progress.exists() else 0
            if done >= len(planned) // 2:
                break
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait()
        first = {json.loads(line)["task"] for line in progress.read_text().splitlines()}
        assert 0 < len(first) < len(planned)
        asked_before = len(teacher.behaviour.requests)
        outcome = generate([KNOWLEDGE, SKILL], Teacher(teacher.url, "teacher"), run, settings)
        again = teacher.behaviour.requests[asked_before:]
    check(outcome, run)
    seeds_again = {body["seed"] for body in again}
    assert not seeds_again & {int(task[:8], 16) for task in first}  # none asked twice
    assert len(again) == len(planned) - len(first)
    with teacher_server() as fresh:  # the same job, never interrupted
        whole = generate(
            [KNOWLEDGE, SKILL], Teacher(fresh.url, "teacher"), tmp_path / "w", settings
        )
    assert outcome.knowledge is not None and whole.knowledge is not None
    assert outcome.knowledge.read_text() == whole.knowledge.read_text()


def test_transient_teacher_errors_are_retried(tmp_path: Path) -> None:
    with teacher_server(Behaviour(fail_first=2)) as teacher:
        outcome = generate([SKILL], Teacher(teacher.url, "teacher"), tmp_path / "run", SMALL)
    check(outcome, tmp_path / "run")
    assert outcome.kept > 0


def test_a_teacher_that_stays_down_keeps_what_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bootlab.sdg.teacher.BACKOFF_S", 0.01)
    with teacher_server(Behaviour(fail_first=10**6)) as teacher:
        outcome = generate([SKILL], Teacher(teacher.url, "teacher"), tmp_path / "run", SMALL)
    with pytest.raises(BootlabError) as raised:
        check(outcome, tmp_path / "run")
    assert raised.value.exit_code == 69
    assert "HTTP 503" in raised.value.message and "run the same command again" in (
        raised.value.hint or ""
    )


def test_garbage_from_the_teacher_is_an_empty_result_not_a_dataset(tmp_path: Path) -> None:
    with teacher_server(Behaviour(garbage=True)) as teacher:
        outcome = generate([SKILL], Teacher(teacher.url, "teacher"), tmp_path / "run", SMALL)
    with pytest.raises(BootlabError) as raised:
        check(outcome, tmp_path / "run")
    assert raised.value.exit_code == 65
    assert "every one was dropped" in raised.value.message or "wrote 0 pair" in (
        raised.value.message
    )
    assert outcome.skills is None


def test_a_refusing_teacher_stops_the_run_at_once(tmp_path: Path) -> None:
    with teacher_server(Behaviour(unauthorized=True)) as teacher:
        with pytest.raises(TeacherError, match="HTTP 401"):
            Teacher(teacher.url, "teacher").chat([], max_tokens=1, temperature=0, seed=0)
        outcome = generate(
            [SKILL, KNOWLEDGE], Teacher(teacher.url, "teacher"), tmp_path / "run", SMALL
        )
        asked = len(teacher.behaviour.requests)
    assert outcome.failed and asked < len(tasks([SKILL, KNOWLEDGE], SMALL))


def test_the_judge_drops_low_scores(tmp_path: Path) -> None:
    judged = Settings(rounds=1, pairs_per_request=2, concurrency=2, judge=True)
    with teacher_server() as teacher:
        outcome = generate([SKILL], Teacher(teacher.url, "teacher"), tmp_path / "run", judged)
        asks = len(teacher.behaviour.requests)
    assert asks == 1 + 2  # one generation, a judgement a pair
    assert outcome.kept == 2


def test_a_run_directory_of_another_taxonomy_is_refused(tmp_path: Path) -> None:
    with teacher_server() as teacher:
        generate([SKILL], Teacher(teacher.url, "teacher"), tmp_path / "run", SMALL)
        with pytest.raises(BootlabError, match="another taxonomy"):
            generate([KNOWLEDGE], Teacher(teacher.url, "teacher"), tmp_path / "run", SMALL)


def test_from_a_taxonomy_to_datasets_through_the_teacher(tmp_path: Path) -> None:
    """`bootlab taxonomy init`'s leaves, the knowledge document in a real git repository:
    read at its commit, chunked, sent to the teacher; the output imports as datasets."""
    from bootlab import taxonomy
    from bootlab.sdg.sources import from_taxonomy

    tree = taxonomy_with_documents(tmp_path)
    leaves = from_taxonomy(taxonomy.leaves(tree), tmp_path / "run" / "documents")
    knowledge = next(leaf for leaf in leaves if leaf.kind == "knowledge")
    assert "Rule 19" in knowledge.documents[0]
    settings = Settings(rounds=1, pairs_per_request=3, concurrency=4, teacher_context=256)
    with teacher_server() as teacher:
        outcome = generate(leaves, Teacher(teacher.url, "teacher"), tmp_path / "run", settings)
    check(outcome, tmp_path / "run")
    assert outcome.knowledge is not None and outcome.skills is not None
    state = tmp_path / "state"
    assert datasets.import_file(state, outcome.knowledge, "knowledge").samples > 3
    assert datasets.import_file(state, outcome.skills, "skills").samples > 0


def test_a_document_pattern_that_matches_nothing_is_named(tmp_path: Path) -> None:
    from bootlab.sdg.sources import documents
    from bootlab.taxonomy import DocumentRef

    docs = tmp_path / "docs"
    docs.mkdir()
    git("init", "-q", cwd=docs)
    (docs / "a.md").write_text("text")
    git("add", ".", cwd=docs)
    git("commit", "-q", "-m", "a", cwd=docs)
    reference = DocumentRef(str(docs), git("rev-parse", "HEAD", cwd=docs), ("missing.md",))
    with pytest.raises(BootlabError) as raised:
        documents(reference, tmp_path / "cache", Path("knowledge/x/qna.yaml"))
    assert "pattern 'missing.md' matches nothing" in raised.value.message
    assert raised.value.exit_code == 65
