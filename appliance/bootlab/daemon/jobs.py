"""Long operations (pulls, pushes) as jobs: a thread each, progress readable at any time,
and a pull already running for the same model is joined, not started twice."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from bootlab.api import DatasetView, ErrorBody, Job, Model
from bootlab.errors import BootlabError, Exit
from bootlab.store.fetch import Progress

log = logging.getLogger("bootlabd.jobs")
LOG_EVERY_S = 5.0
KEEP_FINISHED = 200


@dataclass
class _Running:
    id: str
    kind: Literal["pull", "push", "generate"]
    target: str
    progress: Progress = field(default_factory=Progress)
    state: Literal["running", "succeeded", "failed"] = "running"
    started: float = field(default_factory=time.time)
    finished: float | None = None
    error: ErrorBody | None = None
    model: Model | None = None
    datasets: list[DatasetView] | None = None
    done_event: threading.Event = field(default_factory=threading.Event)

    def view(self) -> Job:
        progress = self.progress
        return Job(
            id=self.id,
            kind=self.kind,
            target=self.target,
            state=self.state,
            unit="requests" if self.kind == "generate" else "bytes",
            total=progress.total,
            done=progress.done,
            fetched=progress.fetched,
            rate_bytes_s=round(progress.rate, 1),
            eta_s=progress.eta_s,
            started=self.started,
            finished=self.finished,
            error=self.error,
            model=self.model,
            datasets=self.datasets,
        )


class Jobs:
    def __init__(self) -> None:
        self._jobs: dict[str, _Running] = {}
        self._lock = threading.Lock()

    def start(
        self,
        kind: Literal["pull", "push", "generate"],
        target: str,
        work: Callable[[Progress], Model | list[DatasetView]],
        dropped: Callable[[], None] | None = None,
    ) -> Job:
        """Start `work` as a job, or join the same job already running (then `work` is
        dropped, and `dropped` frees what it held, such as an upload)."""
        with self._lock:
            for job in self._jobs.values():
                if job.kind == kind and job.target == target and job.state == "running":
                    if dropped is not None:
                        dropped()
                    return job.view()  # the same model already on its way: share it
            job = _Running(uuid.uuid4().hex[:12], kind, target)
            self._jobs[job.id] = job
            self._forget_old()
        threading.Thread(
            target=self._run, args=(job, work), name=f"job-{job.id}", daemon=True
        ).start()
        return job.view()

    def get(self, job_id: str, wait_s: float = 0.0) -> Job | None:
        """The job now, or once it ends if that is within `wait_s` (a long poll: the CLI
        learns of the end at once instead of at its next poll)."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            return None
        if wait_s > 0:
            job.done_event.wait(wait_s)
        return job.view()

    def _run(self, job: _Running, work: Callable[[Progress], Model | list[DatasetView]]) -> None:
        log.info("%s %s: started (job %s)", job.kind, job.target, job.id)
        reporter = threading.Thread(target=self._report, args=(job,), daemon=True)
        reporter.start()
        try:
            result = work(job.progress)
            if isinstance(result, Model):
                job.model = result
            else:
                job.datasets = result
            job.state = "succeeded"
            log.info(
                "%s %s: done, %d %s",
                job.kind,
                job.target,
                job.progress.fetched,
                "requests" if job.kind == "generate" else "bytes fetched",
            )
        except BootlabError as error:
            job.error = ErrorBody(error=error.message, hint=error.hint, code=error.exit_code)
            job.state = "failed"
            log.warning("%s %s failed: %s", job.kind, job.target, error.message)
        except Exception:
            log.exception("%s %s: internal error", job.kind, job.target)
            job.error = ErrorBody(
                error="internal error in bootlabd",
                hint="see: journalctl -u bootlabd",
                code=Exit.SOFTWARE,
            )
            job.state = "failed"
        finally:
            job.finished = time.time()
            job.done_event.set()

    def _report(self, job: _Running) -> None:
        """Progress to the journal now and then, for admins watching `journalctl -f`."""
        while not job.done_event.wait(LOG_EVERY_S):
            progress = job.progress
            percent = 100 * progress.done / progress.total if progress.total else 0
            eta = progress.eta_s
            eta_text = f"{eta:.0f}s" if eta is not None else "unknown"
            if job.kind == "generate":
                log.info(
                    "%s %s: %d of %d requests, %.2f/s, ETA %s",
                    job.kind,
                    job.target,
                    progress.done,
                    progress.total,
                    progress.rate,
                    eta_text,
                )
                continue
            log.info(
                "%s %s: %.0f%% of %.1f MiB, %.1f MiB/s, ETA %s",
                job.kind,
                job.target,
                percent,
                progress.total / 2**20,
                progress.rate / 2**20,
                eta_text,
            )

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.state != "running"]
        for job in sorted(finished, key=lambda j: j.finished or 0)[:-KEEP_FINISHED]:
            del self._jobs[job.id]
