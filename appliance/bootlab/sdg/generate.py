"""From taxonomy leaves to training samples, through a teacher.

Each leaf becomes tasks: a knowledge leaf one for every chunk of its documents (cut to fit
the teacher's context) and round, a skill leaf one a round. A task is one request: the
leaf's seed examples and, for knowledge, the chunk the answers must come from; the answer
is parsed into question/answer pairs, and pairs that are malformed, too long, copies of a
seed or duplicates of an earlier pair are dropped (optionally also those a judge request
scores low). Finished tasks are appended to progress.jsonl as they finish, so a run that
is killed or fails continues with the tasks left, and what was generated is never lost."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from bootlab.errors import Exit, die
from bootlab.sdg.teacher import Teacher, TeacherError
from bootlab.store.fetch import Progress

SYSTEM = "You are a helpful assistant."
PAIR = re.compile(r"\[Question\]\s*(.+?)\s*\[Answer\]\s*(.+?)\s*\[End\]", re.DOTALL)
SCORE = re.compile(r"\b([1-5])\b")
MAX_QUESTION_CHARS = 1000
MAX_ANSWER_CHARS = 4000
CHARS_PER_TOKEN = 3  # conservative: chunks must fit the teacher's context


@dataclass(frozen=True)
class Example:
    question: str
    answer: str
    context: str | None = None


@dataclass(frozen=True)
class Leaf:
    """What generation needs of a taxonomy leaf."""

    path: str
    kind: Literal["knowledge", "skill"]
    task: str  # a skill's task description, a knowledge leaf's domain
    examples: tuple[Example, ...]
    documents: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    rounds: int = 2  # requests a skill leaf or a knowledge chunk gets
    pairs_per_request: int = 3
    concurrency: int = 8
    teacher_context: int = 4096  # tokens
    max_tokens: int = 512
    temperature: float = 0.7
    judge: bool = False
    min_score: int = 4


@dataclass(frozen=True)
class Task:
    id: str
    leaf: Leaf
    chunk: str | None
    round: int


@dataclass
class Outcome:
    generated: int = 0  # pairs the teacher wrote
    kept: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    knowledge: Path | None = None
    skills: Path | None = None


def chunks(document: str, limit: int) -> list[str]:
    """Paragraphs joined up to `limit` characters; a paragraph longer than that is cut."""
    pieces: list[str] = []
    current = ""
    for raw in document.split("\n\n"):
        paragraph = raw.strip()
        if not paragraph:
            continue
        while len(paragraph) > limit:
            pieces.append(paragraph[:limit])
            paragraph = paragraph[limit:]
        if current and len(current) + len(paragraph) + 2 > limit:
            pieces.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        pieces.append(current)
    return pieces


def tasks(leaves: list[Leaf], settings: Settings) -> list[Task]:
    # What the prompt leaves of the context for the chunk: a third, the rest for the
    # examples and the answer.
    limit = settings.teacher_context * CHARS_PER_TOKEN // 3
    found = []
    for leaf in leaves:
        parts: list[str | None] = (
            [c for document in leaf.documents for c in chunks(document, limit)]
            if leaf.kind == "knowledge"
            else [None]
        )
        for index, part in enumerate(parts):
            for round_ in range(settings.rounds):
                key = f"{leaf.path}\0{index}\0{round_}\0{part or ''}"
                task_id = hashlib.sha256(key.encode()).hexdigest()[:16]
                found.append(Task(task_id, leaf, part, round_))
    return found


def prompt(task: Task, settings: Settings) -> list[dict[str, str]]:
    examples = "\n".join(
        f"[Question]\n{e.question}\n[Answer]\n{e.answer}\n[End]" for e in task.leaf.examples
    )
    fmt = (
        "Use exactly this format for each pair, and nothing else:\n"
        "[Question]\n<the question>\n[Answer]\n<the answer>\n[End]"
    )
    n = settings.pairs_per_request
    if task.chunk is not None:
        text = (
            f"Write {n} new question and answer pairs about the document below "
            f"({task.leaf.task}). Every answer must come from the document.\n{fmt}\n\n"
            f"Examples:\n{examples}\n\nDocument:\n{task.chunk}"
        )
    else:
        text = (
            f"Task: {task.leaf.task}\nWrite {n} new examples of this task, different from "
            f"these.\n{fmt}\n\nExamples:\n{examples}"
        )
    return [
        {"role": "system", "content": "You write training data for a language model."},
        {"role": "user", "content": text},
    ]


def parse(text: str) -> list[tuple[str, str]]:
    return [(q.strip(), a.strip()) for q, a in PAIR.findall(text)]


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def _seed(task_id: str) -> int:
    return int(task_id[:8], 16)


def _judge(teacher: Teacher, task: Task, question: str, answer: str, settings: Settings) -> int:
    grounding = f"\n\nDocument:\n{task.chunk}" if task.chunk else ""
    reply = teacher.chat(
        [
            {
                "role": "user",
                "content": "Rate from 1 (wrong or unhelpful) to 5 (correct and helpful) "
                f"this answer to the question{' from the document' if grounding else ''}. "
                f"Reply with the number only.\n\nQuestion: {question}\nAnswer: {answer}"
                f"{grounding}",
            }
        ],
        max_tokens=4,
        temperature=0.0,
        seed=_seed(task.id),
    )
    found = SCORE.search(reply)
    return int(found.group(1)) if found else 0


def run_task(teacher: Teacher, task: Task, settings: Settings) -> dict[str, Any]:
    """One request and its pairs, filtered on their own (duplicates across tasks are
    dropped when the run assembles the output)."""
    answer = teacher.chat(
        prompt(task, settings),
        max_tokens=settings.max_tokens,
        temperature=settings.temperature,
        seed=_seed(task.id),
    )
    seeds = {_normal(e.question) for e in task.leaf.examples}
    kept, rejected = [], {"format": 0, "length": 0, "seed_copy": 0, "judge": 0}
    pairs = parse(answer)
    if not pairs:
        rejected["format"] += 1
    for question, answer_text in pairs:
        if not question or not answer_text:
            rejected["format"] += 1
        elif len(question) > MAX_QUESTION_CHARS or len(answer_text) > MAX_ANSWER_CHARS:
            rejected["length"] += 1
        elif _normal(question) in seeds:
            rejected["seed_copy"] += 1
        elif settings.judge and _judge(teacher, task, question, answer_text, settings) < (
            settings.min_score
        ):
            rejected["judge"] += 1
        else:
            kept.append({"question": question, "answer": answer_text})
    return {
        "task": task.id,
        "leaf": task.leaf.path,
        "kind": task.leaf.kind,
        "generated": len(pairs),
        "kept": kept,
        "rejected": rejected,
    }


def generate(
    leaves: list[Leaf],
    teacher: Teacher,
    directory: Path,
    settings: Settings,
    *,
    progress: Progress | None = None,
    stopping: threading.Event | None = None,
) -> Outcome:
    """Run every task not finished yet; write knowledge.jsonl and skills.jsonl."""
    planned = tasks(leaves, settings)
    _claim(directory, planned, settings, teacher)
    finished = {record["task"]: record for record in _finished(directory / "progress.jsonl")}
    todo = [task for task in planned if task.id not in finished]
    progress = progress or Progress()
    progress.total, progress.done = len(planned), len(planned) - len(todo)
    outcome = Outcome()
    stopping = stopping or threading.Event()
    with (
        (directory / "progress.jsonl").open("a") as journal,
        (directory / "log.jsonl").open("a") as log,
        concurrent.futures.ThreadPoolExecutor(settings.concurrency) as pool,
    ):
        running = {pool.submit(run_task, teacher, task, settings): task for task in todo}
        for future in concurrent.futures.as_completed(running):
            task = running[future]
            if not future.cancelled() and _record(
                task,
                future,
                finished=finished,
                outcome=outcome,
                journal=journal,
                log=log,
                stopping=stopping,
            ):
                progress.add(1, fetched=True)
            if stopping.is_set():  # asked to stop, or a refusal no retry can mend
                for pending in running:
                    pending.cancel()  # those not started yet run on the next start
    _assemble(planned, finished, directory, outcome)
    return outcome


def _record(
    task: Task,
    future: concurrent.futures.Future[dict[str, Any]],
    *,
    finished: dict[str, dict[str, Any]],
    outcome: Outcome,
    journal: TextIO,
    log: TextIO,
    stopping: threading.Event,
) -> bool:
    """Keep a finished task's pairs (on disk at once); False when it failed."""
    try:
        record = future.result()
    except TeacherError as error:
        outcome.failed.append(f"{task.leaf.path} (task {task.id}): {error}")
        log.write(json.dumps({"task": task.id, "error": str(error)}) + "\n")
        log.flush()
        if not error.transient:
            stopping.set()
        return False
    finished[task.id] = record
    journal.write(json.dumps(record) + "\n")
    journal.flush()
    os.fsync(journal.fileno())  # a finished task is never asked for twice
    entry = {"task": task.id, "generated": record["generated"], "kept": len(record["kept"])}
    log.write(json.dumps(entry) + "\n")
    return True


def _claim(directory: Path, planned: list[Task], settings: Settings, teacher: Teacher) -> None:
    """A run directory belongs to one taxonomy, settings and teacher: another is refused
    rather than mixed in."""
    identity = hashlib.sha256(
        json.dumps(
            {
                "tasks": [t.id for t in planned],
                "settings": asdict(settings),
                "model": teacher.model,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / "run.json"
    if marker.exists():
        if json.loads(marker.read_text()).get("identity") != identity:
            raise die(
                f"{directory} holds a generation run of another taxonomy, teacher or settings",
                hint="give this run another name, or remove that directory",
                exit_code=Exit.CONFLICT,
            )
    else:
        marker.write_text(json.dumps({"identity": identity, "tasks": len(planned)}))


def _finished(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        try:
            yield json.loads(line)
        except ValueError:
            continue  # the line a kill cut short: that task runs again


def _assemble(
    planned: list[Task], finished: dict[str, dict[str, Any]], directory: Path, outcome: Outcome
) -> None:
    seen: set[str] = set()
    out: dict[str, list[str]] = {"knowledge": [], "skill": []}
    for task in planned:  # the plan's order: the same output whatever finished first
        record = finished.get(task.id)
        if record is None:
            continue
        outcome.generated += record["generated"]
        for reason, count in record["rejected"].items():
            outcome.rejected[reason] = outcome.rejected.get(reason, 0) + count
        for pair in record["kept"]:
            key = _normal(pair["question"])
            if key in seen:
                outcome.rejected["duplicate"] = outcome.rejected.get("duplicate", 0) + 1
                continue
            seen.add(key)
            messages = [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": pair["question"]},
                {"role": "assistant", "content": pair["answer"]},
            ]
            out[record["kind"]].append(json.dumps({"messages": messages}))
            outcome.kept += 1
    for kind, lines in out.items():
        target = directory / ("knowledge.jsonl" if kind == "knowledge" else "skills.jsonl")
        if lines:
            target.write_text("\n".join(lines) + "\n")
            if kind == "knowledge":
                outcome.knowledge = target
            else:
                outcome.skills = target


def check(outcome: Outcome, directory: Path) -> None:
    """A run that failed or produced nothing says so, keeping what it made."""
    if outcome.failed:
        shown = "\n  ".join(outcome.failed[:5])
        raise die(
            f"{len(outcome.failed)} request(s) to the teacher failed:\n  {shown}",
            hint=f"what finished is kept in {directory}; run the same command again to "
            "retry the rest",
            exit_code=Exit.UNAVAILABLE,
        )
    if not outcome.kept:
        raise die(
            f"nothing usable: the teacher wrote {outcome.generated} pair(s) and every one was "
            f"dropped ({', '.join(f'{k} {v}' for k, v in outcome.rejected.items() if v)})",
            hint=f"see {directory / 'log.jsonl'}; use a stronger teacher model or more rounds",
            exit_code=Exit.DATA,
        )
