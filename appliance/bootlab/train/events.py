"""Progress from the worker to its supervisor: one JSON object a line on an inherited pipe
(the supervisor relays it to systemd's STATUS=, the journal and `bootlab train status`)."""

from __future__ import annotations

import json
import os
from typing import Any

ENV = "BOOTLAB_TRAIN_EVENTS"  # the pipe's descriptor number


class Events:
    def __init__(self, descriptor: int | None) -> None:
        self._descriptor = descriptor

    @classmethod
    def from_env(cls) -> Events:
        value = os.environ.get(ENV)
        return cls(int(value) if value else None)

    def emit(self, event: str, **fields: Any) -> None:
        if self._descriptor is None:
            return
        line = json.dumps({"event": event, **fields}, separators=(",", ":")) + "\n"
        os.write(self._descriptor, line.encode())
