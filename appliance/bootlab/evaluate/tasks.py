"""Benchmark files, JSONL, one item a line:

    multiple choice: {"question": "...", "choices": ["...", "...", ...], "answer": 1}
                     (answer: the index of the right choice, or its letter "B")
    judged:          {"question": "...", "reference": "..."}   (reference optional)

Every problem is reported with its line before any model is loaded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bootlab.errors import Exit, die

LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Choice:
    question: str
    choices: tuple[str, ...]
    answer: int


@dataclass(frozen=True)
class Judged:
    question: str
    reference: str | None = None


Kind = Literal["choice", "judged"]


def load(path: Path) -> tuple[Kind, list[Choice] | list[Judged]]:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise die(f"cannot read {path}: {error}", exit_code=Exit.USAGE) from None
    items: list[Any] = []
    problems: list[str] = []
    kind: Kind | None = None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item, this = _item(line)
        except ValueError as error:
            problems.append(f"{path}:{number}: {error}")
            continue
        if kind is None:
            kind = this
        elif this != kind:
            problems.append(f"{path}:{number}: a {this} item in a file of {kind} items")
            continue
        items.append(item)
    if not items and not problems:
        problems.append(f"{path}: no items (one JSON object a line)")
    if problems:
        raise die(
            f"{len(problems)} problem(s) in {path}:\n  " + "\n  ".join(problems[:10]),
            hint='multiple choice: {"question", "choices": [...], "answer": INDEX or LETTER}; '
            'judged: {"question", "reference"}',
            exit_code=Exit.DATA,
        )
    assert kind is not None
    return kind, items


def _item(line: str) -> tuple[Choice | Judged, Kind]:
    try:
        document = json.loads(line)
    except ValueError:
        raise ValueError("not valid JSON") from None
    if not isinstance(document, dict):
        raise ValueError("each line must be an object")
    question = document.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError('"question" must be a non-empty string')
    if "choices" not in document:
        unknown = set(document) - {"question", "reference"}
        if unknown:
            raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
        reference = document.get("reference")
        if reference is not None and not isinstance(reference, str):
            raise ValueError('"reference" must be a string')
        return Judged(question, reference), "judged"
    choices = document["choices"]
    if (
        not isinstance(choices, list)
        or not 2 <= len(choices) <= len(LETTERS)
        or not all(isinstance(c, str) and c.strip() for c in choices)
    ):
        raise ValueError(f'"choices" must be 2 to {len(LETTERS)} non-empty strings')
    answer = document.get("answer")
    if isinstance(answer, str) and len(answer) == 1 and answer.upper() in LETTERS:
        answer = LETTERS.index(answer.upper())
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(choices):
        raise ValueError(f'"answer" must be a choice\'s index (0-{len(choices) - 1}) or letter')
    return Choice(question, tuple(choices), answer), "choice"
