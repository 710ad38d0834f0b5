"""Benchmark files for `bootlab model evaluate`: both shapes read, every wrong shape named
with its line before any model loads; the results table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bootlab.errors import BootlabError
from bootlab.evaluate import tasks
from bootlab.evaluate.run import Result, table

pytestmark = pytest.mark.unit


def write(path: Path, *items: object) -> Path:
    path.write_text("".join((i if isinstance(i, str) else json.dumps(i)) + "\n" for i in items))
    return path


def test_multiple_choice_items_take_an_index_or_a_letter(tmp_path: Path) -> None:
    kind, items = tasks.load(
        write(
            tmp_path / "mc.jsonl",
            {"question": "2+2?", "choices": ["3", "4"], "answer": 1},
            {"question": "Capital of France?", "choices": ["Lyon", "Paris", "Nice"], "answer": "b"},
        )
    )
    assert kind == "choice"
    assert [item.answer for item in items] == [1, 1]  # type: ignore[union-attr]


def test_judged_items_may_carry_a_reference(tmp_path: Path) -> None:
    kind, items = tasks.load(
        write(tmp_path / "j.jsonl", {"question": "Why?"}, {"question": "How?", "reference": "So."})
    )
    assert kind == "judged"
    assert [item.reference for item in items] == [None, "So."]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{oops", "not valid JSON"),
        ('["a list"]', "each line must be an object"),
        ({"question": ""}, '"question" must be a non-empty string'),
        ({"question": "q", "choices": ["only one"], "answer": 0}, '"choices" must be 2 to 10'),
        ({"question": "q", "choices": ["a", "b"], "answer": 2}, '"answer" must be a choice'),
        ({"question": "q", "choices": ["a", "b"], "answer": "Z"}, '"answer" must be a choice'),
        ({"question": "q", "choices": ["a", "b"], "answer": True}, '"answer" must be a choice'),
        ({"question": "q", "refrence": "x"}, "unknown keys: refrence"),
        ({"question": "q"}, "a judged item in a file of choice items"),
    ],
)
def test_every_wrong_shape_is_named_with_its_line(
    tmp_path: Path, line: object, message: str
) -> None:
    good = {"question": "2+2?", "choices": ["3", "4"], "answer": 1}
    path = write(tmp_path / "bad.jsonl", good, line)
    with pytest.raises(BootlabError) as raised:
        tasks.load(path)
    assert f"{path}:2: {message}" in raised.value.message
    assert raised.value.exit_code == 65


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BootlabError, match="no items"):
        tasks.load(write(tmp_path / "empty.jsonl", ""))


def test_the_table_shows_scores_and_the_difference() -> None:
    shown = table(
        [
            Result("tiny", "bench.jsonl", "choice", 0.25, 40),
            Result("tuned", "bench.jsonl", "choice", 0.5, 40),
        ]
    )
    assert "25.0%" in shown and "50.0%" in shown and "tuned against tiny: +25.0%" in shown
