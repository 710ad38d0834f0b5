"""The benches' history: each result appended with its commit and date to a file in the
bootlab cache (outside the clone), and a table of each figure over the last runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import history
from tests.support.benches import REPO_ROOT

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BOOTLAB_CACHE", str(tmp_path))
    return tmp_path


def test_results_are_kept_in_the_cache_with_commit_and_date(cache: Path) -> None:
    entry = history.add("pull", json.dumps({"ratio": 2.1, "spread": [1.9, 2.4]}))
    assert history.history() == cache / "bench-history.jsonl"
    stored = [json.loads(line) for line in history.history().read_text().splitlines()]
    assert stored == [entry]
    assert entry["result"] == {"ratio": 2.1, "spread": [1.9, 2.4]}
    assert len(entry["commit"]) == 9
    assert entry["date"].startswith("20")


def test_the_table_shows_each_figure_over_the_last_runs() -> None:
    for ratio in (1.0, 1.1, 1.2, 1.3):
        result = {"ratio": ratio, "spread": [ratio - 0.1, ratio + 0.1], "goals": {"ratio": 1}}
        history.add("train", json.dumps({**result, "launch_differences": [], "met": True}))
    history.add("sdg", json.dumps({"ratio": 4.5, "control": 1.02}))
    with history.history().open("a") as file:
        file.write('{"bench": "cut')  # a line a kill cut short
    text = history.table(last=3)
    train, sdg = text.split("\nsdg ")
    assert train.startswith("train (last 3 runs")
    rows = {line.split()[0]: line.split()[1:] for line in train.splitlines()[2:]}
    assert rows["ratio"] == ["1.1", "1.2", "1.3"]  # the oldest run is left out
    assert rows["spread"][-1] == "1.2..1.4"
    assert rows["met"] == ["true"] * 3
    assert "goals" not in rows and "launch_differences" not in rows
    assert sdg.startswith("(last 1 runs") and "1.02" in sdg


def test_ci_appends_and_prints_the_table(cache: Path) -> None:
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'appliance'}:{REPO_ROOT}"}
    run = [sys.executable, "-m", "bench.history"]
    subprocess.run(
        [*run, "add", "render"], input='log\n{"ratio": 27.3}\n', text=True, env=env, check=True
    )
    shown = subprocess.run(
        [*run, "table"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert "render (last 1 runs" in shown.stdout and "27.3" in shown.stdout
    empty = subprocess.run([*run, "add", "render"], input="", text=True, env=env, check=False)
    assert empty.returncode != 0
