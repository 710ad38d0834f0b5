"""The benches' harness: what a bench starts cannot outlive it (a process that escapes its
group fails the bench by name and is killed; SIGTERM half-way unwinds and removes
everything), ratios come as A B, B A, ... pairs with their spread and a same-against-same
control, and the render bench as CI runs it leaves nothing, interrupted or not."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from bootlab.errors import BootlabError, Exit

from bench import harness
from tests.support.benches import REPO_ROOT, leaves_nothing, run_bench

pytestmark = pytest.mark.unit


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_interleave_alternates_the_sides_and_reads_the_ratio_and_control() -> None:
    ran: list[tuple[str, int]] = []
    # Made-up readings: A drifts up by 10% a round, B reads twice A's.
    value = {harness.A: 10.0, harness.B: 20.0}

    def measure(side: str, index: int) -> float:
        ran.append((side, index))
        return value[side] * 1.1**index

    with harness.harness("unit", quick=True) as bench:
        runs = bench.interleave(5, measure, quiet_s=0)
    a, b = harness.A, harness.B
    assert ran == [(a, 0), (b, 0), (b, 1), (a, 1), (a, 2), (b, 2), (b, 3), (a, 3), (a, 4), (b, 4)]
    assert runs.ratios() == pytest.approx([2.0] * 5)
    # B B at the first meeting (later over earlier), A A at the next (earlier over later)...
    assert runs.controls() == pytest.approx([1.1, 1 / 1.1, 1.1, 1 / 1.1])
    figures = runs.figures()
    assert figures["ratio"] == 2.0
    assert figures["spread"] == [2.0, 2.0]
    assert figures["control"] == pytest.approx(1.0, abs=0.1)
    assert figures["control_spread"] == [0.909, 1.1]
    assert figures["pairs"] == 5


def test_the_harness_gives_the_bench_a_root_and_removes_it() -> None:
    before = os.environ.get("TMPDIR")
    with harness.harness("unit", quick=True) as bench:
        assert os.environ["TMPDIR"] == str(bench.root / "tmp")
        (bench.root / "tmp" / "made-here").write_text("x")
        root = bench.root
    assert not root.exists()
    assert os.environ.get("TMPDIR") == before
    assert harness.MARK not in os.environ or os.environ[harness.MARK] != bench.token


# Children that start a sleeper and exit, leaving it behind where stopping their group
# cannot reach it: one in a session of its own (only the mark in its environment finds it),
# one with the mark gone from its environment, as vLLM's renamed processes (only its session
# finds it).
LEAKS = {
    "new session": "[sys.executable, '-c', 'import time; time.sleep(300)', 'escaped'],"
    " start_new_session=True",
    "environment hidden": "['sleep', '301'], env={}, process_group=0",
}


@pytest.mark.parametrize("leak", sorted(LEAKS))
def test_a_process_left_behind_fails_the_bench_by_name_and_is_killed(
    leak: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(harness, "EXIT_GRACE_S", 0.5)
    script = (
        "import subprocess, sys;"
        f"p = subprocess.Popen({LEAKS[leak]},"
        " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid)"
    )
    with (
        pytest.raises(BootlabError) as failure,
        harness.harness("unit", quick=True) as bench,
    ):
        sleeper = int(bench.call([sys.executable, "-c", script]))
        marked = harness.MARK.encode() in Path(f"/proc/{sleeper}/environ").read_bytes()
    assert marked == (leak == "new session")
    assert failure.value.exit_code == Exit.SOFTWARE
    assert f"pid {sleeper}" in failure.value.message
    assert ("escaped" if marked else "sleep 301") in failure.value.message
    deadline = time.monotonic() + 5
    while _alive(sleeper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(sleeper)


def test_a_sigterm_while_a_child_is_created_waits_until_it_is_tracked() -> None:
    """Raised out of Popen, the signal would leave the new child running and untracked."""
    reached = []
    with (
        harness.harness("unit", quick=True) as bench,
        pytest.raises(harness.Interrupted),
        bench.signals.held(),
    ):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the handler runs in here, and holds the signal
        reached.append("the end of the held block")
    assert reached == ["the end of the held block"]


SIGTERMED = textwrap.dedent(
    """
    import subprocess, sys, time
    from bench import harness

    def measure(bench):
        sleeper = [sys.executable, "-c", "import subprocess, sys, time;"
                   "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']);"
                   "time.sleep(300)"]
        with bench.spawn(sleeper):
            (bench.root / "tmp" / "half-done").write_text("x")
            bench.note("round 1/1: a")
            time.sleep(300)
        return {}

    harness.main("sigtermed", measure, quick=True)
    """
)


def test_sigterm_half_way_stops_the_whole_group_and_removes_the_root() -> None:
    outcome = run_bench(["-c", SIGTERMED], interrupt_at="round 1/", timeout_s=60)
    assert outcome.returncode == Exit.INTERRUPTED, outcome.stderr
    assert "interrupted (SIGTERM); cleaned up" in outcome.stderr
    assert outcome.left == []


def test_render_bench_leaves_nothing_and_reports_its_noise_floor() -> None:
    result = leaves_nothing(["-m", "bench.render"])
    assert result is not None
    for key in ("render_ms", "cli_vs_python_ratio", "goal_met"):
        assert key in result, key


def test_render_bench_interrupted_half_way_leaves_nothing() -> None:
    leaves_nothing(["-m", "bench.render"], interrupt_at="round 1/", settle_s=0)


def test_no_module_but_the_tests_conftest_edits_sys_path() -> None:
    """Benches, helpers and scripts import as packages from the repository root."""
    offenders = []
    for folder in ("bench", "tests", "scripts"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            if path == REPO_ROOT / "tests" / "conftest.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"sys\.path(\s*\[|\s*\+?=|\.(insert|append|extend))", line):
                    offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}")
    assert offenders == []


def test_benches_run_as_modules() -> None:
    """`python -m bench.NAME --help` works from the repository root for every bench."""
    for path in sorted((REPO_ROOT / "bench").glob("*.py")):
        if path.stem in ("__init__", "harness", "history"):
            continue
        done = subprocess.run(
            [sys.executable, "-m", f"bench.{path.stem}", "--help"],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'appliance'}:{REPO_ROOT}"},
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, (path.stem, done.stderr[-2000:])
        assert "--quick" in done.stdout, path.stem


def test_quick_is_also_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(harness.QUICK, "1")
    assert harness.parser("doc").parse_args([]).quick
    monkeypatch.delenv(harness.QUICK)
    assert not harness.parser("doc").parse_args([]).quick
