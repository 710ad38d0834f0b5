"""Benchmark files for `bootlab model evaluate`: both shapes read, every wrong shape named
with its line before any model loads; the results table; the served judge behind a key."""

from __future__ import annotations

import json
import os
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from appliance_daemon import REPO_ROOT
from bootlab.errors import BootlabError
from bootlab.evaluate import tasks
from bootlab.evaluate.run import Result, table
from bootlab.paths import Paths
from teacher_server import Behaviour, teacher_server

pytestmark = pytest.mark.unit


def write(path: Path, *items: object) -> Path:
    path.write_text("".join((i if isinstance(i, str) else json.dumps(i)) + "\n" for i in items))
    return path


def test_multiple_choice_items_take_an_index_or_a_letter(tmp_path: Path) -> None:
    kind, items = tasks.load(
        write(
            tmp_path / "mc.jsonl",
            {"question": "2+2?", "choices": ["3", "4"], "answer": 1},
            {"question": "Capital of France?", "choices": ["Lyon", "Paris", "Nice"], "answer": "b"},
        )
    )
    assert kind == "choice"
    assert [item.answer for item in items] == [1, 1]  # type: ignore[union-attr]


def test_judged_items_may_carry_a_reference(tmp_path: Path) -> None:
    kind, items = tasks.load(
        write(tmp_path / "j.jsonl", {"question": "Why?"}, {"question": "How?", "reference": "So."})
    )
    assert kind == "judged"
    assert [item.reference for item in items] == [None, "So."]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{oops", "not valid JSON"),
        ('["a list"]', "each line must be an object"),
        ({"question": ""}, '"question" must be a non-empty string'),
        ({"question": "q", "choices": ["only one"], "answer": 0}, '"choices" must be 2 to 10'),
        ({"question": "q", "choices": ["a", "b"], "answer": 2}, '"answer" must be a choice'),
        ({"question": "q", "choices": ["a", "b"], "answer": "Z"}, '"answer" must be a choice'),
        ({"question": "q", "choices": ["a", "b"], "answer": True}, '"answer" must be a choice'),
        ({"question": "q", "refrence": "x"}, "unknown keys: refrence"),
        ({"question": "q"}, "a judged item in a file of choice items"),
    ],
)
def test_every_wrong_shape_is_named_with_its_line(
    tmp_path: Path, line: object, message: str
) -> None:
    good = {"question": "2+2?", "choices": ["3", "4"], "answer": 1}
    path = write(tmp_path / "bad.jsonl", good, line)
    with pytest.raises(BootlabError) as raised:
        tasks.load(path)
    assert f"{path}:2: {message}" in raised.value.message
    assert raised.value.exit_code == 65


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BootlabError, match="no items"):
        tasks.load(write(tmp_path / "empty.jsonl", ""))


def test_the_table_shows_scores_and_the_difference() -> None:
    shown = table(
        [
            Result("tiny", "bench.jsonl", "choice", 0.25, 40),
            Result("tuned", "bench.jsonl", "choice", 0.5, 40),
        ]
    )
    assert "25.0%" in shown and "50.0%" in shown and "tuned against tiny: +25.0%" in shown


@contextmanager
def serve_state(socket_path: Path, document: dict[str, object]) -> Iterator[None]:
    """bootlabd's answer to `GET /v1/services/serve` while bootlab-serve serves (systemd,
    which the real daemon asks for the unit's state, is not here)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def do_GET(self) -> None:
            assert self.path == "/v1/services/serve"
            data = json.dumps(document).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    class Server(socketserver.ThreadingUnixStreamServer):
        def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
            connection, _ = super().get_request()
            return connection, ("local", 0)  # BaseHTTPRequestHandler logs a (host, port)

    with Server(str(socket_path), Handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield
        finally:
            server.shutdown()


def test_the_served_judge_is_sent_the_servers_api_key(tmp_path: Path) -> None:
    """Judged questions go to the model bootlab-serve serves; with serve.api_key_file set,
    that server refuses every request without the key, so the judge must send it."""
    root = tmp_path / "root"
    paths = Paths(root)
    key_file = root / "etc/bootlab/serve-api-key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text("s3cret\n")
    paths.config_file.write_text(json.dumps({"serve": {"api_key_file": str(key_file)}}))
    # A stand-in ML venv: its "python" answers every question the worker is given.
    (paths.ml_venv / "lib/python3.11/site-packages/transformers").mkdir(parents=True)
    (paths.ml_venv / "lib/python3.11/site-packages/transformers/__init__.py").touch()
    python = paths.ml_venv / "bin/python"
    python.parent.mkdir()
    python.write_text(
        f"#!{sys.executable}\nimport json, sys\nplan = json.load(open(sys.argv[-2]))\n"
        "json.dump(['An answer.'] * len(plan['items']), open(sys.argv[-1], 'w'))\n"
    )
    python.chmod(0o755)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    questions = write(tmp_path / "judged.jsonl", {"question": "Why?"}, {"question": "How?"})
    with (
        teacher_server(Behaviour(api_key="s3cret")) as judge,
        tempfile.TemporaryDirectory(prefix="bl-", dir="/tmp") as short,  # socket path limit
        serve_state(Path(short, "api.sock"), {"endpoint": judge.url, "model": "judge"}),
    ):
        env = {key: value for key, value in os.environ.items() if key != "BOOTLAB_API_KEY"} | {
            "BOOTLAB_ROOT": str(root),
            "BOOTLAB_SOCKET": str(Path(short, "api.sock")),
            "PYTHONPATH": str(REPO_ROOT / "appliance"),
        }
        evaluated = subprocess.run(
            [
                sys.executable,
                "-m",
                "bootlab.cli",
                "model",
                "evaluate",
                str(model),
                "--tasks",
                str(questions),
                "--json",
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=60,
        )
    assert evaluated.returncode == 0, evaluated.stderr
    (result,) = json.loads(evaluated.stdout)
    assert (result["kind"], result["items"], result["score"]) == ("judged", 2, 5)
    assert len(judge.behaviour.requests) == 2
