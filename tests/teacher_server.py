"""A teacher for tests that need one that follows instructions (the tiny model does not):
a local OpenAI-compatible server answering /v1/chat/completions in the real response
format, with answers made from the prompt itself, so they are grounded in the chunk or the
seed examples it was given and differ per request seed. Faults can be injected: HTTP
errors for the first N requests, garbage, or a refusal (401); with `api_key` it demands that
key as a Bearer token, as vLLM does with --api-key."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Behaviour:
    fail_first: int = 0  # answer 503 to this many requests
    status: int = 503
    garbage: bool = False
    unauthorized: bool = False
    api_key: str | None = None  # refuse (401) every request without this Bearer token
    delay_s: float = 0.0  # a slower teacher, to catch a run half-way
    requests: list[dict[str, object]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _answer(body: dict[str, object]) -> str:
    prompt = str(body["messages"][-1]["content"])  # type: ignore[index]
    if prompt.startswith("Rate"):  # a judge's question: the score it gives
        return "5" if "unhelpful-answer" not in prompt else "1"
    seed = body.get("seed", 0)
    document = prompt.split("Document:\n", 1)[1] if "Document:\n" in prompt else prompt
    words = re.findall(r"[A-Za-z]{4,}", document)
    n = int(re.search(r"Write (\d+) new", prompt).group(1))  # type: ignore[union-attr]
    pairs = []
    for i in range(n):
        tag = hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()[:6]
        word = words[(int(tag, 16) + i) % len(words)] if words else "thing"
        pairs.append(
            f"[Question]\nWhat does the text say about {word} ({tag})?\n"
            f"[Answer]\nIt mentions {word} in context {tag}.\n[End]"
        )
    return "Here you go:\n" + "\n".join(pairs)


@dataclass
class TeacherServer:
    url: str  # the API base
    behaviour: Behaviour


@contextmanager
def teacher_server(behaviour: Behaviour | None = None) -> Iterator[TeacherServer]:
    state = behaviour or Behaviour()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(state.delay_s)
            with state.lock:
                state.requests.append(body)
                failing = len(state.requests) <= state.fail_first
            wrong_key = state.api_key and self.headers["Authorization"] != f"Bearer {state.api_key}"
            if state.unauthorized or wrong_key:
                return self._send(401, {"error": {"message": "invalid api key"}})
            if failing:
                return self._send(state.status, {"error": {"message": "overloaded"}})
            content = "I cannot help with that." if state.garbage else _answer(body)
            self._send(
                200,
                {
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": content},
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                },
            )
            return None

        def _send(self, status: int, document: dict[str, object]) -> None:
            data = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield TeacherServer(f"http://127.0.0.1:{server.server_address[1]}/v1", state)
    finally:
        server.shutdown()
        server.server_close()
