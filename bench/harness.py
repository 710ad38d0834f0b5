"""The harness every bench runs in: nothing a bench starts outlives it, and every ratio it
measures comes with its spread and a same-against-same control from the same run.

Why: a bench that leaves a server, a container or a busy child behind slows the next one
(two vLLM servers left with PPID 1 read as a 5% loss in the training bench that followed),
and a ratio printed without its noise floor cannot be judged against a goal of 1.0.

- Everything a bench starts carries `BOOTLAB_BENCH_RUN=<token>` in its environment, which
  children inherit however they detach (a new session, a double fork), so at the end the
  harness finds by scanning /proc whatever is still alive: it kills it and fails the bench,
  naming the process.
- A child that may start children runs through `Bench.spawn` or `Bench.call`: bootlab's
  `run.spawn(new_group=True)`, so its stop reaches the whole group. Containers and images a
  bench names with `Bench.container` and `Bench.image` are removed at the end, and so is its
  temp root, which is also TMPDIR for all it starts.
- SIGTERM (and SIGINT) unwinds the bench like an error: every `with` stops what it holds,
  then the harness cleans up as above and exits with Exit.INTERRUPTED.
- `Bench.interleave` compares two sides, A and B, in rounds of one run each, A B, B A, A B,
  ...: each pair next to each other in time, who goes first alternating, every run started
  once the CPUs are quiet. Its figures are the median of the rounds' B/A ratios, their
  spread (lowest and highest), and the control: where two rounds meet one side runs twice in
  a row (A B | B A | A B), and those same-against-same pairs' ratios are what the bench
  reads when nothing differs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from bootlab import run
from bootlab.errors import BootlabError, Exit, die

MARK = "BOOTLAB_BENCH_RUN"  # in the environment of everything a bench starts
QUICK = "BOOTLAB_BENCH_QUICK"  # "1": the smallest settings, for the tests
# A run starts once the CPUs are this idle over a quarter second, or after QUIET_WAIT_S on a
# machine that never is: vLLM's CPU worker spins for about a second after a burst, and a
# run started into that read up to 3x slower (bench/serve.py measured it).
QUIET_BUSY, QUIET_WAIT_S = 0.15, 5.0
EXIT_GRACE_S = 10.0  # a process may take this long to go after its group was stopped
A, B = "a", "b"
ROOT = Path(__file__).resolve().parent.parent


class Interrupted(BaseException):
    """SIGTERM or SIGINT during a bench: unwinds every `with` the way an error does."""


def parser(doc: str) -> argparse.ArgumentParser:
    """A bench's argument parser, with `--quick` (also BOOTLAB_BENCH_QUICK=1)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get(QUICK) == "1",
        help="the smallest settings (seconds, not minutes): what the leak tests run",
    )
    return parser


@dataclasses.dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    pgid: int
    sid: int
    command: str

    def __str__(self) -> str:
        return f"pid {self.pid} (parent {self.ppid}, group {self.pgid}): {self.command}"


def carriers(token: str, *, prefix: bool = False, sessions: Collection[int] = ()) -> list[Process]:
    """Live processes (zombies aside) other than this one whose environment holds
    BOOTLAB_BENCH_RUN=token (with `prefix`, a value starting with token), or that run in one
    of `sessions`: a process that renames itself (vLLM's `VLLM::EngineCore`, through
    setproctitle) overwrites the environment /proc shows, but keeps the session it began in."""
    wanted = f"{MARK}={token}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = Path(entry.path, "environ").read_bytes().split(b"\0")
            stat = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            command = Path(entry.path, "cmdline").read_bytes()
        except OSError:  # gone meanwhile, or a kernel thread
            continue
        marked = any(var == wanted or (prefix and var.startswith(wanted)) for var in environ)
        if (marked or int(stat[3]) in sessions) and stat[0] != "Z":
            text = command.replace(b"\0", b" ").decode(errors="replace").strip()
            pid, ppid, pgid, sid = int(entry.name), int(stat[1]), int(stat[2]), int(stat[3])
            found.append(Process(pid, ppid, pgid, sid, text[:300]))
    return found


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields) - idle, sum(fields)


def wait_quiet(limit_s: float = QUIET_WAIT_S, busy: float = QUIET_BUSY) -> None:
    """Until at most `busy` of the CPUs' time was busy over a quarter second, or `limit_s`
    has passed."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        used, total = cpu_times()
        time.sleep(0.25)
        used_after, total_after = cpu_times()
        if (used_after - used) <= busy * max(total_after - total, 1):
            return


def spread(values: Sequence[float], digits: int = 3) -> list[float]:
    """[lowest, highest]: how far apart the pairs behind a median read."""
    return [round(min(values), digits), round(max(values), digits)]


def figures(
    ratios: Sequence[float], controls: Sequence[float], digits: int = 3
) -> dict[str, object]:
    """What every ratio bench reports: the median ratio, its spread, the control (the median
    same-against-same ratio: the noise floor) and the control's spread."""
    return {
        "ratio": round(statistics.median(ratios), digits),
        "spread": spread(ratios, digits),
        "control": round(statistics.median(controls), digits) if controls else None,
        "control_spread": spread(controls, digits) if controls else None,
        "pairs": len(ratios),
    }


@dataclasses.dataclass(frozen=True)
class Run:
    side: str  # A or B
    round: int
    value: float


@dataclasses.dataclass(frozen=True)
class Interleaved:
    """The runs of `Bench.interleave`, in the order they ran."""

    runs: tuple[Run, ...]

    def values(self, side: str) -> list[float]:
        return [run.value for run in self.runs if run.side == side]

    def ratios(self) -> list[float]:
        """Each round's B over its A: two runs next to each other in time."""
        rounds: dict[int, dict[str, float]] = {}
        for run_ in self.runs:
            rounds.setdefault(run_.round, {})[run_.side] = run_.value
        return [values[B] / values[A] for values in rounds.values()]

    def controls(self) -> list[float]:
        """Where two rounds meet, one side ran twice in a row: the later over the earlier at
        every other meeting and the other way round at the rest, as B over A goes."""
        found = []
        for meeting, index in enumerate(range(1, len(self.runs) - 1, 2)):
            earlier, later = self.runs[index], self.runs[index + 1]
            assert earlier.side == later.side, (earlier, later)
            pair = (
                (later.value, earlier.value) if meeting % 2 == 0 else (earlier.value, later.value)
            )
            found.append(pair[0] / pair[1])
        return found

    def figures(self, digits: int = 3) -> dict[str, object]:
        return figures(self.ratios(), self.controls(), digits)


@dataclasses.dataclass
class Bench:
    """One bench's run: what it started, to stop; its temp root; its settings."""

    name: str
    quick: bool
    token: str
    root: Path  # removed at the end; TMPDIR of everything the bench starts
    signals: Signals
    _groups: list[int] = dataclasses.field(default_factory=list)
    _containers: list[str] = dataclasses.field(default_factory=list)
    _images: list[str] = dataclasses.field(default_factory=list)

    def note(self, message: str) -> None:
        print(f"bench {self.name}: {message}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def spawn(
        self,
        command: Sequence[str | Path],
        *,
        env: Mapping[str, str] | None = None,
        **options: Any,
    ) -> Iterator[subprocess.Popen[Any]]:
        """`run.spawn` (the same options) in a process group of its own: stopped, the whole
        group, however the block ends. An `env` of the bench's own gets the harness's mark
        and TMPDIR too."""
        if env is not None:
            env = {**env, MARK: self.token, "TMPDIR": str(self.root / "tmp")}
        with contextlib.ExitStack() as stack:
            with self.signals.held():  # a SIGTERM now is raised once the child is tracked
                spawned = run.spawn(command, env=env, new_group=True, **options)
                child = stack.enter_context(spawned)
                self._groups.append(child.pid)
            yield child

    def call(
        self,
        command: Sequence[str | Path],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        input_text: str | None = None,
        capture: bool = True,
    ) -> str:
        """Run a command to its end in a group of its own (an interrupt stops all it started)
        and return its stdout (without `capture`, stdout goes to stderr: progress is log
        output); a failure ends the bench with the command's last words."""
        with self.spawn(
            command,
            env=env,
            cwd=cwd,
            stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else sys.stderr,
            stderr=subprocess.PIPE if capture else None,
            text=True,
        ) as child:
            out, err = child.communicate(input_text)
        if child.returncode != 0:
            argv = shlex.join(str(part) for part in command)
            raise die(
                f"{argv[:200]} failed (exit {child.returncode})",
                hint=(err or "").strip()[-2000:] or "its output is above",
            )
        return out or ""

    def container(self, label: str) -> str:
        """A name for a container this bench runs; whatever has it is removed at the end."""
        name = f"bootlab-bench-{self.token}-{label}"
        self._containers.append(name)
        return name

    def image(self, label: str) -> str:
        """A tag for an image this bench builds; removed at the end."""
        tag = f"localhost/bootlab-bench-{self.token}:{label}"
        self._images.append(tag)
        return tag

    def interleave(
        self,
        rounds: int,
        measure: Callable[[str, int], float],
        *,
        quiet_s: float = QUIET_WAIT_S,
    ) -> Interleaved:
        """`rounds` rounds of `measure(side, round)` for A and B (A B, B A, A B, ...), each
        run once the CPUs are quiet (or after `quiet_s`). B/A is the ratio, so `measure`
        returns what the bench's ratio is made of (a rate, a time)."""
        runs = []
        for index in range(rounds):
            for side in (A, B) if index % 2 == 0 else (B, A):
                wait_quiet(quiet_s)
                self.note(f"round {index + 1}/{rounds}: {side}")
                runs.append(Run(side, index, measure(side, index)))
        result = Interleaved(tuple(runs))
        self.note(
            f"ratios {[round(r, 3) for r in result.ratios()]}, "
            f"controls {[round(c, 3) for c in result.controls()]}"
        )
        return result

    def cleanup(self) -> list[str]:
        """Stop what is left, remove containers, images and the temp root; what was left."""
        # A spawn's child leads a session of its own (start_new_session): what runs in it
        # is the bench's, whatever its environment shows.
        sessions = set(self._groups)
        left = carriers(self.token, sessions=sessions)
        for group in {process.pgid for process in left} & sessions:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)  # the rest of a group a spawn stopped
        if self._containers:
            run.run(["podman", "rm", "-f", "-t", "3", *self._containers], capture=True, check=False)
        if self._images:
            run.run(["podman", "rmi", "-f", *self._images], capture=True, check=False)
        problems = [f"left running: {process}" for process in _outlived(self.token, sessions)]
        for process in _outlived(self.token, sessions, grace_s=0, kill=True):
            problems.append(f"would not die: {process}")
        shutil.rmtree(self.root, ignore_errors=True)
        if self.root.exists():
            problems.append(f"temp root {self.root} could not be removed")
        return problems


def _outlived(
    token: str, sessions: Collection[int], grace_s: float | None = None, kill: bool = False
) -> list[Process]:
    """The bench's processes still alive after `grace_s` (EXIT_GRACE_S); with `kill`,
    SIGKILLed first and given up to 5 s to go."""
    grace_s = EXIT_GRACE_S if grace_s is None else grace_s
    if kill:
        for process in carriers(token, sessions=sessions):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(process.pid, signal.SIGKILL)
        grace_s = 5.0
    deadline = time.monotonic() + grace_s
    while (left := carriers(token, sessions=sessions)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


class Signals:
    """SIGTERM raises Interrupted once; later ones (while cleaning up) are only counted.
    While `held`, it waits: a child being created is not yet anyone's to stop (an exception
    out of Popen leaves the child running), so the signal is raised once it is tracked."""

    def __init__(self) -> None:
        self.armed = True
        self.late = 0  # received once disarmed
        self.holding = 0
        self.pending: str | None = None
        self.previous = signal.signal(signal.SIGTERM, self.handle)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.armed:
            self.late += 1
            return
        if self.holding:
            self.pending = signal.Signals(signum).name
            return
        self.armed = False
        raise Interrupted(signal.Signals(signum).name)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.holding += 1
        try:
            yield
        finally:
            self.holding -= 1
        if not self.holding and self.pending and self.armed:
            self.armed = False
            raise Interrupted(self.pending)

    def restore(self) -> None:
        signal.signal(signal.SIGTERM, self.previous)


@contextlib.contextmanager
def harness(name: str, *, quick: bool = False) -> Iterator[Bench]:
    """A bench's run: its token and temp root set up, everything cleaned up at the end. A
    bench that left something running fails (Exit.SOFTWARE), naming it."""
    inherited = os.environ.get(MARK)  # a test's prefix, to find what the bench left
    token = "-".join(filter(None, (inherited, name.replace("_", "-"), secrets.token_hex(4))))
    base = os.environ.get("TMPDIR") or "/var/tmp"  # /var/tmp: room for the pull bench's GiB
    root = Path(tempfile.mkdtemp(prefix=f"bootlab-bench-{name}-", dir=base))
    (root / "tmp").mkdir()
    saved = {key: os.environ.get(key) for key in (MARK, "TMPDIR", "CONTAINERS_CONF")}
    saved_tempdir = tempfile.tempdir
    os.environ.update({MARK: token, "TMPDIR": str(root / "tmp")})
    # The project's podman settings (runc, nofile limits), as scripts/env.sh sets them.
    os.environ.setdefault("CONTAINERS_CONF", str(ROOT / ".ci" / "containers.conf"))
    tempfile.tempdir = str(root / "tmp")
    signals = Signals()
    bench = Bench(name, quick, token, root, signals)
    try:
        yield bench
    finally:
        signals.armed = False
        problems = bench.cleanup()
        signals.restore()
        tempfile.tempdir = saved_tempdir
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if problems:
            for problem in problems:
                bench.note(problem)
            raise die(
                f"bench {name} left {len(problems)} thing(s) behind (killed or removed now): "
                + "; ".join(problems),
                hint="stop it where it is started: Bench.spawn/Bench.call, or a `with`",
                exit_code=Exit.SOFTWARE,
            )
        if signals.late:
            raise Interrupted("SIGTERM during cleanup")


def main(name: str, measure: Callable[[Bench], dict[str, object]], *, quick: bool) -> None:
    """Run one bench in the harness. Its result (JSON) is the last stdout line, printed only
    once everything it started is gone."""
    try:
        with harness(name, quick=quick) as bench:
            result = measure(bench)
    except (Interrupted, KeyboardInterrupt) as interrupt:
        print(f"bench {name}: interrupted ({interrupt}); cleaned up", file=sys.stderr)
        sys.exit(Exit.INTERRUPTED)
    except BootlabError as error:
        print(error.render(), file=sys.stderr)
        sys.exit(error.exit_code)
    print(json.dumps(result), flush=True)


def command_line(name: str, doc: str | None, measure: Callable[[Bench], dict[str, object]]) -> None:
    """The whole `python -m bench.NAME [--quick]` of a bench with no options of its own."""
    main(name, measure, quick=parser(doc or name).parse_args().quick)
