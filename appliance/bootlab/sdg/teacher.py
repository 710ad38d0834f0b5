"""The teacher: any OpenAI-compatible chat endpoint (by default the model bootlab-serve
serves). Transient failures (connection refused or reset, timeouts, 5xx) are retried with
backoff; a 4xx is the request's fault and is not."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

RETRIES = 4
BACKOFF_S = 1.0


class TeacherError(Exception):
    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Teacher:
    endpoint: str  # the API base, e.g. http://127.0.0.1:8000/v1
    model: str
    api_key: str | None = None
    timeout_s: float = 120.0

    def chat(
        self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float, seed: int
    ) -> str:
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "seed": seed,
        }
        delay = BACKOFF_S
        for attempt in range(RETRIES):
            try:
                return self._once(body)
            except TeacherError as error:
                if not error.transient or attempt == RETRIES - 1:
                    raise
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def _once(self, body: dict[str, Any]) -> str:
        request = urllib.request.Request(  # noqa: S310 - the admin's endpoint, http(s) only
            f"{self.endpoint.rstrip('/')}/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:  # noqa: S310
                document = json.loads(answer.read())
        except urllib.error.HTTPError as error:
            detail = error.read()[:200].decode(errors="replace")
            raise TeacherError(
                f"the teacher answered HTTP {error.code}: {detail}", transient=error.code >= 500
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            raise TeacherError(f"the teacher is unreachable: {reason}", transient=True) from None
        except ValueError:
            raise TeacherError("the teacher's answer is not JSON", transient=True) from None
        try:
            content = document["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise TeacherError(
                "the teacher's answer has no choices[0].message.content", transient=False
            ) from None
        return str(content or "")
