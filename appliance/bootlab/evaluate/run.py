"""Evaluate a model from the store, or compare two, on a benchmark file or a taxonomy's own
questions: multiple choice scored from log-probabilities in the ML venv, judged answers
scored 1-10 by a judge endpoint (an OpenAI-compatible teacher)."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bootlab.apikey import served_key
from bootlab.errors import Exit, die
from bootlab.evaluate.tasks import Choice, Judged, Kind
from bootlab.sdg.teacher import Teacher, TeacherError
from bootlab.workload.launch import ml_module_argv

SCORE = re.compile(r"\b(10|[1-9])\b")


@dataclass
class Result:
    model: str
    benchmark: str
    kind: Kind
    score: float  # accuracy (0-1) for multiple choice, the mean judge score (1-10) otherwise
    items: int
    details: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(
    python: str,
    model_dir: Path,
    name: str,
    *,
    benchmark: str,
    kind: Kind,
    items: list[Choice] | list[Judged],
    judge: Teacher | None,
    max_new_tokens: int = 256,
) -> Result:
    if kind == "choice":
        picks = _worker(python, model_dir, "choice", [asdict(i) for i in items], max_new_tokens)
        details = [
            {
                "question": item.question,
                "answer": item.answer,
                **pick,
                "correct": pick["pick"] == item.answer,
            }
            for item, pick in zip(items, picks, strict=True)
            if isinstance(item, Choice)
        ]
        score = sum(d["correct"] for d in details) / len(details)
        return Result(name, benchmark, kind, score, len(details), details)
    if judge is None:
        raise die(
            "judged questions need a judge: nothing is being served",
            hint="serve a judge model (`bootlab serve start MODEL`) or give --judge-endpoint "
            "URL --judge-model NAME",
            exit_code=Exit.NOT_CONFIGURED,
        )
    answers = _worker(python, model_dir, "answers", [asdict(i) for i in items], max_new_tokens)
    details = []
    for item, answer in zip(items, answers, strict=True):
        assert isinstance(item, Judged)
        details.append(
            {"question": item.question, "answer": answer, "score": _judge(judge, item, str(answer))}
        )
    score = sum(d["score"] for d in details) / len(details)
    return Result(name, benchmark, kind, score, len(details), details)


def served_judge(served: Mapping[str, Any], api_key_file: str | None) -> Teacher | None:
    """The model bootlab-serve serves now (its service state), as the judge, with the key
    its clients send when serve.api_key_file is set; None when nothing is served."""
    if not served.get("endpoint"):
        return None
    return Teacher(str(served["endpoint"]), str(served["model"]), served_key(api_key_file))


def _worker(
    python: str, model_dir: Path, kind: str, items: list[dict[str, Any]], max_new_tokens: int
) -> list[Any]:
    with tempfile.TemporaryDirectory(prefix="bootlab-evaluate-") as scratch:
        plan = Path(scratch) / "plan.json"
        out = Path(scratch) / "out.json"
        plan.write_text(
            json.dumps(
                {
                    "model_dir": str(model_dir),
                    "kind": kind,
                    "items": items,
                    "max_new_tokens": max_new_tokens,
                }
            )
        )
        done = subprocess.run(
            ml_module_argv(python, "bootlab.evaluate.worker", str(plan), str(out)),
            capture_output=True,
            text=True,
            check=False,
            env={
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_VERBOSITY": "error",
                "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                "PATH": "/usr/bin:/bin",
            },
        )
        if done.returncode != 0:
            raise die(
                f"evaluating {model_dir.name} failed: {done.stderr.strip().splitlines()[-1:]}",
                hint="the model must load with transformers (a Hugging Face directory)",
                exit_code=Exit.ERROR,
            )
        return list(json.loads(out.read_text()))


def _judge(judge: Teacher, item: Judged, answer: str) -> int:
    reference = f"\nA reference answer: {item.reference}" if item.reference else ""
    try:
        reply = judge.chat(
            [
                {
                    "role": "user",
                    "content": "Rate the answer to the question from 1 (wrong or unhelpful) to "
                    "10 (correct, complete and helpful). Reply with the number only.\n\n"
                    f"Question: {item.question}{reference}\nAnswer: {answer}",
                }
            ],
            max_tokens=4,
            temperature=0.0,
            seed=0,
        )
    except TeacherError as error:
        raise die(f"the judge failed: {error}", exit_code=Exit.UNAVAILABLE) from None
    found = SCORE.search(reply)
    return int(found.group(1)) if found else 1  # a judge that says no number gives nothing


def table(results: list[Result]) -> str:
    lines = [f"{'MODEL':<28} {'BENCHMARK':<28} {'KIND':<8} {'ITEMS':>5}  SCORE"]
    for result in results:
        shown = f"{result.score:.1%}" if result.kind == "choice" else f"{result.score:.2f}/10"
        lines.append(
            f"{result.model:<28} {result.benchmark[-28:]:<28} {result.kind:<8} "
            f"{result.items:>5}  {shown}"
        )
    if len(results) == 2:
        first, second = results
        delta = second.score - first.score
        shown = f"{delta:+.1%}" if first.kind == "choice" else f"{delta:+.2f}"
        lines.append(f"{second.model} against {first.model}: {shown}")
    return "\n".join(lines)
