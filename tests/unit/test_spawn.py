"""run.spawn(): the child is stopped and reaped however the block ends, the whole group when
asked, and a missing program is one readable error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from bootlab.errors import BootlabError
from bootlab.run import spawn

pytestmark = pytest.mark.unit


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_child_is_stopped_when_the_block_raises() -> None:
    with (
        pytest.raises(RuntimeError),
        spawn([sys.executable, "-c", "import time; time.sleep(60)"]) as child,
    ):
        raise RuntimeError("boom")
    assert child.returncode == -signal.SIGTERM


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace() -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "print(1, flush=True); time.sleep(60)"
    )
    started = time.monotonic()
    with spawn([sys.executable, "-c", code], stdout=subprocess.PIPE, stop_timeout=0.5) as child:
        assert child.stdout is not None
        child.stdout.readline()
    assert child.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10


def test_new_group_takes_the_grandchildren_down_too() -> None:
    code = (
        "import subprocess, sys, time;"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        "print(p.pid, flush=True); time.sleep(60)"
    )
    with spawn([sys.executable, "-c", code], stdout=subprocess.PIPE, new_group=True) as child:
        assert child.stdout is not None
        grandchild = int(child.stdout.readline())
        assert os.getpgid(grandchild) == child.pid
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def test_a_missing_program_is_a_readable_error() -> None:
    with pytest.raises(BootlabError) as refused, spawn(["bootlab-no-such-tool"]):
        pass
    assert "not installed" in refused.value.message
