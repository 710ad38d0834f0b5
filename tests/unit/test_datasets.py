"""Training data in InstructLab's messages format: every bad line found, with its number,
before any compute; a good file kept whole under /var/lib/bootlab/datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bootlab import datasets
from bootlab.errors import BootlabError, Exit

pytestmark = pytest.mark.unit


def sample(question: str = "What is bootc?", answer: str = "Image-based Linux.") -> str:
    return json.dumps(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer},
            ]
        }
    )


def test_a_good_file_is_imported_whole(tmp_path: Path) -> None:
    source = tmp_path / "knowledge.jsonl"
    source.write_text("\n".join(sample() for _ in range(5)) + "\n\n")
    dataset = datasets.import_file(tmp_path / "state", source, "knowledge")
    assert (dataset.samples, dataset.messages) == (5, 15)
    kept = tmp_path / "state/datasets/knowledge/data.jsonl"
    assert kept.read_bytes() == source.read_bytes()
    assert datasets.listing(tmp_path / "state") == [dataset]
    assert datasets.get(tmp_path / "state", "knowledge") == dataset


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', 'each line must be an object with a "messages" list'),
        ('{"messages": ["text"]}', "messages[0] is not an object"),
        ('{"messages": [{"role": "bot", "content": "x"}]}', "messages[0].role is 'bot'"),
        ('{"messages": [{"role": "user", "content": " "}]}', "messages[0].content is empty"),
        (
            '{"messages": [{"role": "user", "content": "q"}]}',
            "a sample needs a user message and an",
        ),
    ],
)
def test_bad_lines_are_named_with_their_numbers(tmp_path: Path, line: str, problem: str) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text(sample() + "\n" + line + "\n" + sample() + "\n")
    with pytest.raises(BootlabError) as refused:
        datasets.import_file(tmp_path / "state", source, "bad")
    assert f"{source}:2: {problem}" in refused.value.message
    assert refused.value.exit_code == Exit.DATA
    assert not (tmp_path / "state/datasets/bad").exists()


def test_samples_beyond_the_context_are_refused(tmp_path: Path) -> None:
    source = tmp_path / "long.jsonl"
    source.write_text(sample(answer="word " * 400) + "\n")
    with pytest.raises(BootlabError) as refused:
        datasets.import_file(tmp_path / "state", source, "long", context=256)
    assert "beyond the model's context of 256" in refused.value.message


def test_many_errors_are_summarised_and_an_existing_dataset_survives(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(sample() + "\n")
    datasets.import_file(tmp_path / "state", good, "skills")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{\n" * 25)
    with pytest.raises(BootlabError) as refused:
        datasets.import_file(tmp_path / "state", bad, "skills")
    assert "25 problem(s)" in refused.value.message and "and 15 more" in refused.value.message
    assert datasets.get(tmp_path / "state", "skills").samples == 1  # the old one, untouched


def test_empty_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(BootlabError) as empty:
        datasets.import_file(tmp_path / "state", tmp_path / "empty.jsonl", "e")
    assert "no samples" in empty.value.message
    with pytest.raises(BootlabError) as missing:
        datasets.import_file(tmp_path / "state", tmp_path / "none.jsonl", "n")
    assert "cannot read" in missing.value.message
