"""Checkpoints of one job under /var/lib/bootlab/checkpoints/<job>/, each written whole or
not at all: a directory is filled as `.NAME.partial`, its files fsynced, then renamed
(`files.cache_entry`).

    job.json              which job made this directory (its fingerprint)
    resume/PP-SSSSSSSS/   phase PP after step S: weights, optimizer, scheduler, RNG, state
    candidates/PHASE-eN/  the model after epoch N of a phase, with its held-out loss
    final/                the chosen model, handed to the model store

A directory made by another job, or one that is not ours, is refused, never written over."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bootlab import files

FORMAT = 1
STATE = "trainer_state.json"  # written last: a resume directory without it is not whole


class CheckpointError(Exception):
    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def write_json(path: Path, document: Any) -> None:
    files.write_atomic(path, json.dumps(document, indent=1).encode())


class Checkpoints:
    def __init__(self, root: Path, job: str, fingerprint: str) -> None:
        self.root = root
        self.job = job
        self.fingerprint = fingerprint
        self.resume_dir = root / "resume"
        self.candidates_dir = root / "candidates"
        self.final = root / "final"

    def claim(self) -> None:
        """Make the directory ours, or refuse: another job's checkpoints are kept as they are."""
        marker = self.root / "job.json"
        if marker.exists():
            try:
                document = json.loads(marker.read_text())
                theirs = document["fingerprint"]
            except (OSError, ValueError, KeyError, TypeError):
                raise CheckpointError(
                    f"{marker} is unreadable, so {self.root} cannot be trusted to resume from",
                    f"set train.job to a new name, or move {self.root} aside",
                ) from None
            if theirs != self.fingerprint:
                raise CheckpointError(
                    f"{self.root} holds checkpoints of job '{self.job}' made with other "
                    "settings (model, data or hyperparameters changed since)",
                    f"set train.job to a new name to start afresh, or restore the settings "
                    f"to resume; remove {self.root} only if you no longer need it",
                )
        elif self.root.exists() and any(self.root.iterdir()):
            raise CheckpointError(
                f"{self.root} exists and is not a bootlab checkpoint directory",
                f"set train.job to another name, or move {self.root} aside",
            )
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            write_json(marker, {"format": FORMAT, "job": self.job, "fingerprint": self.fingerprint})
        # Our own interrupted writes, never a checkpoint (.partial-NAME: older bootlabs').
        for pattern in (".*.partial", ".partial-*"):
            for partial in self.root.rglob(pattern):
                shutil.rmtree(partial, ignore_errors=True)

    def save(self, target: Path, fill: Callable[[Path], None]) -> Path:
        # Only a candidate is ever saved twice: the same epoch redone after a resume from
        # before it (the same numbers, since the run is deterministic).
        with files.cache_entry(target, sync=True) as partial:
            partial.mkdir(parents=True)
            fill(partial)
        return target

    def resume_name(self, phase: int, step: int) -> Path:
        return self.resume_dir / f"{phase:02d}-{step:08d}"

    def resumable(self) -> list[Path]:
        if not self.resume_dir.is_dir():
            return []
        return sorted(
            path
            for path in self.resume_dir.iterdir()
            if not path.name.startswith(".") and path.is_dir()
        )

    def latest(self) -> tuple[Path, dict[str, Any]] | None:
        """The newest resume point and its state; an unreadable one is an error, not skipped:
        the admin decides whether to fall back to an older one."""
        found = self.resumable()
        if not found:
            return None
        newest = found[-1]
        try:
            state = json.loads((newest / STATE).read_text())
            if state.get("format") != FORMAT or state.get("fingerprint") != self.fingerprint:
                raise ValueError("made by another job or version")
        except (OSError, ValueError) as error:
            raise CheckpointError(
                f"checkpoint {newest} is damaged or foreign ({error})",
                f"move {newest} out of {self.resume_dir} to resume from the one before it",
            ) from None
        return newest, state

    def prune(self, keep: int) -> None:
        for old in self.resumable()[:-keep]:
            shutil.rmtree(old)

    def candidate(self, phase: str, epoch: int) -> Path:
        return self.candidates_dir / f"{phase}-e{epoch}"
