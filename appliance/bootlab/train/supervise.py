"""The train unit's main process: it starts the ML worker, relays its progress to systemd
(READY once the data is checked, STATUS= at every step), the journal (structured fields) and
/run/bootlab/train.json (for `bootlab train status`), and publishes the trained model into
the store when the job is done. A stop (SIGTERM) reaches the worker too: it finishes its
step, saves a checkpoint and exits, and the next start resumes from it; meanwhile STATUS=
says so, and systemd's stop timeout is extended while the checkpoint is still being
written (a big model's takes minutes)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from bootlab import journal, text
from bootlab.config import Config
from bootlab.errors import Exit, die
from bootlab.paths import Paths
from bootlab.run import spawn
from bootlab.store.fetch import Progress
from bootlab.store.layout import model_store
from bootlab.store.sources import local
from bootlab.train.events import ENV, Receiver
from bootlab.train.plan import Plan
from bootlab.workload import state
from bootlab.workload.launch import ml_module_argv

log = logging.getLogger("bootlab.train")
STATUS_EVERY_S = 1.0
CHECKING_EVERY_S = 5.0  # how often checking the data says how long it has taken
# While stopping: every EXTEND_EVERY_S, if the worker still makes progress, systemd is told
# to wait EXTEND_WINDOW_S more for the next word (it only matters past TimeoutStopSec=).
EXTEND_EVERY_S = 20.0
EXTEND_WINDOW_S = 120.0


def worker_argv(python: str, plan_path: Path, processes: int) -> list[str]:
    """The worker, or `processes` of them under torchrun (one a GPU), each running the
    same bootstrap."""
    worker = ml_module_argv(python, "bootlab.train.worker", str(plan_path))
    if processes <= 1:
        return worker
    return [
        python,
        "-I",
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        "--no-python",
        *worker,
    ]


def worker_env(plan: Plan, events: str) -> dict[str, str]:
    env = {
        **os.environ,
        ENV: events,
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TRANSFORMERS_VERBOSITY": "warning",
        "HF_HUB_OFFLINE": "1",
    }
    if plan.gpus == 0:
        # A CPU job on a machine with GPUs must not touch them: torch would otherwise give
        # FSDP's device mesh CUDA, one GPU a rank, whatever the job asked for.
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def supervise(
    python: str, plan: Plan, plan_path: Path, *, config: Config, paths: Paths, lock: int
) -> int:
    """`lock` (the GPU lock) is held by this process, which outlives the workers."""
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    journal.notify(f"STATUS=checking the data of job {plan.job}")
    receiver = Receiver(str(paths.runtime / "train.events"))
    relay = Relay(plan, paths)
    relay.write("starting")  # not the last job's progress
    try:
        # An error in this loop stops the worker as systemd would: SIGTERM first (it saves a
        # checkpoint), SIGKILL after spawn()'s grace.
        with spawn(
            worker_argv(python, plan_path, plan.processes),
            env=worker_env(plan, receiver.path),
            what="the training worker",
        ) as child:
            stop: Stop | None = None
            while child.poll() is None:
                event = receiver.receive(timeout=0.5)
                if event is not None:
                    relay.handle(event)
                if stopping.is_set() and stop is None:
                    child.send_signal(signal.SIGTERM)  # systemd sends it to every process too
                    stop = relay.stop()
                if stop is not None:
                    stop.tick(heard=event is not None)
                elif not relay.ready:
                    relay.checking()
            while (event := receiver.receive(timeout=0)) is not None:
                relay.handle(event)  # what was said just before the exit
            code = child.returncode
    finally:
        receiver.close()
    if relay.error is not None:
        raise die(relay.error["error"], relay.error.get("hint"), int(relay.error["code"]))
    if code != Exit.OK:
        raise die(
            f"the training worker exited with code {code}",
            hint="see journalctl -u bootlab-train -n 100; the job resumes from its last "
            "checkpoint on the next start",
            exit_code=Exit.ERROR,
        )
    if relay.done is None:
        relay.write("stopped")
        log.info("job %s stopped; it resumes from its last checkpoint", plan.job)
        return Exit.OK
    publish(plan, config, paths)
    relay.write("done")
    journal.notify(f"STATUS=job {plan.job} done: model {plan.output} is in the store")
    return Exit.OK


def publish(plan: Plan, config: Config, paths: Paths) -> None:
    """The chosen model into the store under the output name; its files are moved, not
    copied (the final directory exists only to be published)."""
    store = model_store(paths, config.models.directory)
    final = Path(plan.checkpoints) / "final"
    if not final.is_dir() or not any(final.iterdir()):
        if any(record.name == plan.output for record in store.records()):
            return  # published by an earlier start, stopped right after
        raise die(
            f"job {plan.job} finished but {final} is gone",
            hint=f"remove {plan.checkpoints}/result.json to train again",
            exit_code=Exit.ERROR,
        )
    record = local.pull(str(final), plan.output, store, progress=Progress(), move=True)
    log.info("published %s (%s) into the model store", plan.output, text.size(record.size))


class Relay:
    """Progress events to systemd, the journal and the state file."""

    def __init__(self, plan: Plan, paths: Paths) -> None:
        self.plan = plan
        self.paths = paths
        self.error: dict[str, Any] | None = None
        self.done: dict[str, Any] | None = None
        self.progress: state.TrainingProgress | None = None  # the last step's
        self.device: str | None = None  # where the worker runs, once it says
        self.started = time.time()
        self.ready = False
        self.stopping = False
        self._status_at = 0.0
        self._step_status: str | None = None  # the last step's line, shown again after a save
        self._checking_at = time.monotonic()
        self._misfit = False

    def checking(self) -> None:
        """Until READY: how long checking the data has taken (TimeoutStartSec= bounds it)."""
        now = time.monotonic()
        if now - self._checking_at >= CHECKING_EVERY_S:
            self._checking_at = now
            journal.notify(
                f"STATUS=checking the data of job {self.plan.job}, "
                f"{time.time() - self.started:.0f} s"
            )

    def stop(self) -> Stop:
        """A stop began: the worker finishes its step, then saves a checkpoint."""
        self.stopping = True
        step = f"step {self.progress.step + 1}" if self.progress else "the step"
        journal.notify(f"STATUS=stopping: finishing {step}, then saving a checkpoint")
        log.info("stopping job %s: the worker saves a checkpoint first", self.plan.job)
        return Stop(Path(self.plan.checkpoints))

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "ready":
            resumed = event.get("resumed")
            where = (
                f"resuming at phase {resumed['phase'] + 1} step {resumed['step']}"
                if resumed
                else "starting"
            )
            self.device = event.get("device")
            if event.get("finished"):  # its result is on disk: nothing was checked or run
                log.info("job %s had already finished", self.plan.job)
            else:
                log.info(
                    "job %s: data checked (%s samples), %s on %s",
                    self.plan.job,
                    event.get("samples"),
                    where,
                    self.device,
                )
            journal.notify(f"READY=1\nSTATUS=job {self.plan.job}: {where}")
            self.ready = True
            self.write("running")
        elif kind == "step":
            self._progress(event)
            self.write("running")  # every step: /run is memory, and status reads it
            now = time.monotonic()
            if now - self._status_at >= STATUS_EVERY_S:
                self._status_at = now
                self._step_status = describe(event)
                journal.notify(f"STATUS={self._step_status}")
                log.info(self._step_status, extra=_fields(event))
        elif kind == "eval":
            peak = event.get("peak_gpu_mib")
            log.info(
                "phase %s epoch %s: %s %.4f%s",
                event["phase"],
                event["epoch"],
                event["metric"],
                event["loss"],
                f", peak GPU memory {peak} MiB" if peak is not None else "",
            )
        elif kind == "saving":
            doing = "stopping: saving a checkpoint" if self.stopping else "saving a checkpoint"
            journal.notify(f"STATUS={doing} at step {event['step']} ({event['path']})")
        elif kind == "checkpoint":
            log.info("checkpoint %s", event["path"])
            if self.stopping:
                journal.notify(f"STATUS=stopping: checkpoint saved at step {event['step']}")
            elif self._step_status is not None:
                # Saved: `systemctl status` shows the progress again, not the save, until the
                # next step's line (steps are told at most every STATUS_EVERY_S).
                journal.notify(f"STATUS={self._step_status}")
        elif kind == "error":
            self.error = event
            log.error("%s (%s)", event["error"], event.get("hint"))
        elif kind == "done":
            self.done = event

    def _progress(self, step: dict[str, Any]) -> None:
        fields = {key: value for key, value in step.items() if key != "event"}
        try:
            self.progress = state.TrainingProgress.model_validate(fields)
        except ValueError as error:
            # A step the status file cannot hold is a bug to report, not a reason to stop
            # the job: said once, and status shows the last step it could hold.
            if not self._misfit:
                log.warning("the status file cannot hold this step: %s", error)
            self._misfit = True

    def write(self, phase: state.Phase) -> None:
        document = state.TrainingState(
            job=self.plan.job,
            state=phase,
            output=self.plan.output,
            phases=[p.name for p in self.plan.phases],
            device=self.device,
            started=self.started,
            progress=self.progress,
        )
        state.write(state.train_file(self.paths), document)


class Stop:
    """A stop in progress. systemd kills the unit at TimeoutStopSec= (15 min); a checkpoint
    of a big model can take longer to write, so while it still grows (its partial files, or
    what this unit's cgroup has written to disk, which grows while an fsync drains), or the
    worker still reports, the timeout is extended a window at a time. A worker that hangs
    stops earning windows, and systemd ends it as before."""

    def __init__(self, checkpoints: Path) -> None:
        self.checkpoints = checkpoints
        self._at = time.monotonic()
        self._written = written(checkpoints)
        self._heard = False

    def tick(self, *, heard: bool) -> None:
        self._heard = self._heard or heard
        now = time.monotonic()
        if now - self._at < EXTEND_EVERY_S:
            return
        self._at = now
        grown = written(self.checkpoints)
        if self._heard or grown != self._written:
            journal.notify(f"EXTEND_TIMEOUT_USEC={int(EXTEND_WINDOW_S * 1e6)}")
        self._written, self._heard = grown, False


def written(checkpoints: Path) -> int:
    """Bytes written so far by checkpoints in progress (`.NAME.partial`, files.cache_entry)
    and by this unit's processes to disk (cgroup v2 io.stat, where the io controller is on)."""
    total = 0
    for partial in checkpoints.rglob(".*.partial"):
        for path in partial.rglob("*"):
            with contextlib.suppress(OSError):
                total += path.stat().st_size if path.is_file() else 0
    return total + _cgroup_written()


def _cgroup_written() -> int:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        group = next(line[3:] for line in lines if line.startswith("0::"))
        stat = (Path("/sys/fs/cgroup") / group.lstrip("/") / "io.stat").read_text()
    except (OSError, StopIteration):
        return 0
    return sum(int(field[7:]) for field in stat.split() if field.startswith("wbytes="))


def describe(step: dict[str, Any]) -> str:
    """One line for systemctl status: phase, step, loss, tokens/s and ETA."""
    return (
        f"phase {step['phase']} ({step['phase_index'] + 1}/{step['phases']}) "
        f"step {step['step']}/{step['steps']} loss {step['loss']:.4f} "
        f"{step['tokens_per_s']:.0f} tok/s ETA {_duration(step['eta_s'])}"
    )


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _fields(step: dict[str, Any]) -> dict[str, Any]:
    """Structured journal fields (BOOTLAB_STEP=...), for `journalctl -o json` and tools."""
    keys = ("phase", "step", "steps", "loss", "tokens_per_s", "eta_s")
    return {f"BOOTLAB_{key.upper()}": step[key] for key in keys}
