"""Step logging for the build pipeline: one line per step, with how long it took."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

QUIET = False

# Commands run through `bootlab.run` log their argv; the build shows them on stderr.
_handler = logging.StreamHandler(sys.stderr)
_handler.setFormatter(logging.Formatter("%(message)s"))
logging.getLogger("bootlab.run").addHandler(_handler)
logging.getLogger("bootlab.run").setLevel(logging.INFO)


def quiet_commands(quiet: bool) -> None:
    logging.getLogger("bootlab.run").setLevel(logging.WARNING if quiet else logging.INFO)


def log(message: str) -> None:
    if not QUIET:
        print(message, file=sys.stderr, flush=True)


@contextmanager
def step(title: str) -> Iterator[None]:
    log(f"‣ {title}")
    started = time.monotonic()
    yield
    log(f"  done in {time.monotonic() - started:.1f}s")
