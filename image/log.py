"""Step logging for the build pipeline: one line per step, with how long it took."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

QUIET = False


def log(message: str) -> None:
    if not QUIET:
        print(message, file=sys.stderr, flush=True)


@contextmanager
def step(title: str) -> Iterator[None]:
    log(f"‣ {title}")
    started = time.monotonic()
    yield
    log(f"  done in {time.monotonic() - started:.1f}s")
