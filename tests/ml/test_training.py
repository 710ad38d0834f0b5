"""`bootlab train run` (what bootlab-train.service runs) on CPU with the tiny model: two
phases where the loss goes down, a kill -9 in phase 2 that resumes at the last checkpoint
with the same losses as a run never interrupted, the result in the store and loadable, a
clean stop, and bad input refused before any compute."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from bootlab import datasets
from bootlab.paths import Paths
from bootlab.store.layout import model_store
from bootlab.sysinfo import probe

from tests.support.tiny_model import ML_VENV, appliance_with_tiny_model, tiny_model
from tests.support.train_data import job_yaml, write

pytestmark = pytest.mark.ml
REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT_EVERY = 2


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Paths:
    root = tmp_path_factory.mktemp("train")
    paths = appliance_with_tiny_model(root / "root")
    for kind in ("knowledge", "skills"):
        datasets.import_file(paths.state, write(root / f"{kind}.jsonl", kind, 64), kind)
    return paths


@dataclass
class Run:
    process: subprocess.Popen[str]
    messages: list[str] = field(default_factory=list)

    def status(self, paths: Paths) -> dict[str, object]:
        try:
            return dict(json.loads((paths.runtime / "train.json").read_text()))
        except (OSError, ValueError):
            return {}

    def finish(self, timeout: float = 600) -> tuple[int, str]:
        _, errors = self.process.communicate(timeout=timeout)
        return self.process.returncode, errors


def _start_train(paths: Paths, notify: Path, config: str) -> subprocess.Popen[str]:
    """`bootlab train run` as systemd starts it, telling the socket `notify` what it
    would tell systemd."""
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text(config)
    return subprocess.Popen(
        [sys.executable, "-m", "bootlab.cli", "train", "run"],
        env={
            **os.environ,
            "BOOTLAB_ROOT": str(paths.root),
            "NOTIFY_SOCKET": str(notify),
            "PYTHONPATH": str(REPO_ROOT / "appliance"),
        },
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.fixture
def train(appliance: Paths, tmp_path: Path) -> Iterator[Callable[[str], Run]]:
    runs: list[Run] = []

    def start(config: str) -> Run:
        notify = tmp_path / f"notify-{len(runs)}"
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(str(notify))
        run = Run(_start_train(appliance, notify, config))

        def listen() -> None:
            while True:
                try:
                    run.messages.append(receiver.recv(4096).decode())
                except OSError:
                    return

        threading.Thread(target=listen, daemon=True).start()
        runs.append(run)
        return run

    yield start
    for run in runs:
        if run.process.poll() is None:
            kill_tree(run.process.pid)
            run.process.wait()


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants, as `systemctl kill -s KILL` does to the
    unit's cgroup (torchrun starts its ranks in sessions of their own: a process group is
    not enough)."""
    pids = [pid]
    for parent in pids:  # grows while walking: breadth first
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                pids += [int(child) for child in task.read_text().split()]
    for victim in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def result(paths: Paths, job: str) -> dict[str, object]:
    return dict(json.loads((paths.state / "checkpoints" / job / "result.json").read_text()))


def losses(history: object) -> list[tuple[int, int, float]]:
    assert isinstance(history, list)
    return [(int(p), int(s), float(loss)) for p, s, loss in history]


def test_two_phases_then_kill_and_resume_to_the_same_losses(
    appliance: Paths, train: Callable[[str], Run]
) -> None:
    start = train
    reference = start(job_yaml("whole", CHECKPOINT_EVERY))
    code, errors = reference.finish()
    assert code == 0, errors
    gpus = probe(appliance.root).gpus  # what preflight sees: the job runs on the first GPU
    where = f"1 x {gpus[0].name}, bf16 autocast" if gpus else "CPU (1 process), fp32"
    assert f"data checked ([64, 64] samples), starting on {where}" in errors
    whole = losses(result(appliance, "whole")["history"])
    for phase in (0, 1):
        curve = [loss for p, _, loss in whole if p == phase]
        assert sum(curve[-3:]) / 3 < sum(curve[:3]) / 3 * 0.9, (phase, curve)
    assert any("READY=1" in m for m in reference.messages)
    assert any("STATUS=phase skills (2/2) step" in m for m in reference.messages)

    # The same job under another name, killed (every process, as `systemctl kill -s KILL`)
    # in the middle of phase 2.
    cut = start(job_yaml("cut", CHECKPOINT_EVERY))
    deadline = time.monotonic() + 600
    killed_at = None
    while time.monotonic() < deadline and cut.process.poll() is None:
        status = cut.status(appliance)
        progress = status.get("progress") or {} if status.get("job") == "cut" else {}
        assert isinstance(progress, dict)
        if progress.get("phase_index") == 1 and int(progress.get("step", 0)) >= 5:
            kill_tree(cut.process.pid)
            killed_at = int(progress["step"])
            break
        time.sleep(0.05)
    assert killed_at is not None, "phase 2 was never reached"
    cut.process.wait()
    resume = appliance.state / "checkpoints" / "cut" / "resume"
    last = max(int(p.name.split("-")[1]) for p in resume.iterdir() if p.name.startswith("01-"))
    assert killed_at - CHECKPOINT_EVERY <= last <= killed_at

    again = start(job_yaml("cut", CHECKPOINT_EVERY))
    code, errors = again.finish()
    assert code == 0, errors
    assert any(f"resuming at phase 2 step {last}" in m for m in again.messages), again.messages
    resumed = losses(result(appliance, "cut")["history"])
    assert [(p, s) for p, s, _ in resumed] == [(p, s) for p, s, _ in whole]
    for (_, step, expected), (_, _, got) in zip(whole, resumed, strict=True):
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-6), step

    # The result is a model in the store that loads and generates.
    store = model_store(appliance)
    assert {"tiny-whole", "tiny-cut"} <= {r.name for r in store.records()}
    generated = subprocess.run(
        [
            str(ML_VENV / "bin" / "python"),
            "-c",
            "import sys, torch; from transformers import AutoModelForCausalLM, AutoTokenizer;"
            "t = AutoTokenizer.from_pretrained(sys.argv[1]);"
            "m = AutoModelForCausalLM.from_pretrained(sys.argv[1]);"
            "ids = t.apply_chat_template([{'role': 'user', 'content': 'what is ba'}],"
            " add_generation_prompt=True, return_tensors='pt', return_dict=True);"
            "print(len(m.generate(**ids, max_new_tokens=4, do_sample=False)[0]))",
            str(store.models / "tiny-cut"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert generated.returncode == 0, generated.stderr[-2000:]
    assert int(generated.stdout.split()[-1]) > 4


def test_stop_saves_a_checkpoint_and_the_next_start_resumes(
    appliance: Paths, train: Callable[[str], Run]
) -> None:
    start = train
    run = start(job_yaml("stopped", 1000, epochs=20))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = run.status(appliance)
        progress = status.get("progress") or {} if status.get("job") == "stopped" else {}
        if isinstance(progress, dict) and int(progress.get("step", 0)) >= 3:
            break
        time.sleep(0.05)
    run.process.send_signal(signal.SIGTERM)  # the supervisor passes it on
    os.kill(_worker_pid(run.process.pid), signal.SIGTERM)  # and systemd sends it to all
    code, errors = run.finish(timeout=120)
    assert code == 0, errors
    assert run.status(appliance)["state"] == "stopped"
    # Saved at the step it stopped after (not only at the last epoch's end).
    saved = sorted((appliance.state / "checkpoints" / "stopped" / "resume").iterdir())
    step = int(saved[-1].name.split("-")[1])
    stopped_at = run.status(appliance)["progress"]
    assert isinstance(stopped_at, dict)
    assert step == stopped_at["step"]

    again = start(job_yaml("stopped", 1000, epochs=20))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any("READY=1" in m for m in again.messages):
        time.sleep(0.1)
    assert any(f"resuming at phase 1 step {step}" in m for m in again.messages)
    kill_tree(again.process.pid)


def _worker_pid(parent: int) -> int:
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    assert children, "no worker process"
    return int(children[0])


def test_data_for_another_template_is_refused_before_training(
    appliance: Paths, train: Callable[[str], Run], tmp_path: Path
) -> None:
    chatml = tmp_path / "chatml.jsonl"
    good = json.dumps(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ho"}]}
    )
    bad = json.dumps(
        {
            "messages": [
                {"role": "user", "content": "<|im_start|>user\nhi"},
                {"role": "assistant", "content": "ho<|im_end|>"},
            ]
        }
    )
    chatml.write_text(f"{good}\n{bad}\n")
    datasets.import_file(appliance.state, chatml, "chatml")
    run = train(
        "train: {model: tiny, data: chatml, job: chatml, max_seq_len: 256, max_batch_len: 512}\n"
    )
    code, errors = run.finish(timeout=300)
    assert code == 65, errors
    assert "data.jsonl:2: a user message contains '<|im_start|>'" in errors
    assert "ChatML" in errors
    assert "Traceback" not in errors
    assert not (appliance.state / "checkpoints" / "chatml" / "resume").exists()


def test_lora_trains_adapters_and_publishes_a_merged_model(
    appliance: Paths, train: Callable[[str], Run]
) -> None:
    run = train(
        "train:\n  model: tiny\n  data: knowledge\n  job: lora\n  output: tiny-lora\n"
        "  max_seq_len: 256\n  max_batch_len: 512\n"
        "  lora: {rank: 4, alpha: 8, target_modules: [q_proj, v_proj]}\n"
    )
    code, errors = run.finish()
    assert code == 0, errors
    candidates = appliance.state / "checkpoints" / "lora" / "candidates"
    adapter = next(candidates.iterdir())
    assert (adapter / "adapter_model.safetensors").exists()  # the adapters only
    assert not (adapter / "model.safetensors").exists()
    published = model_store(appliance).models / "tiny-lora"
    base = model_store(appliance).models / "tiny"
    # Merged: a whole model of the base's size, not an adapter.
    assert (published / "model.safetensors").stat().st_size == pytest.approx(
        (base / "model.safetensors").stat().st_size, rel=0.01
    )
    assert json.loads((published / "config.json").read_text())["model_type"] == "llama"


PACKING = r"""
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from bootlab.train import tokens
from bootlab.train.batching import micro_batches
from bootlab.train.engine import forward
from tests.support.train_data import conversations

model_dir = sys.argv[1]
tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
foreign = {m: n for m, n in tokens.KNOWN_MARKUP.items() if m not in tokenizer.chat_template}
special = set(tokenizer.all_special_tokens)
samples = [
    tokens.encode(tokenizer, c["messages"], 256, foreign, special)
    for c in conversations("knowledge", 5) + conversations("skills", 5)
]
trained = sum(s.trained_tokens for s in samples)
cpu = torch.device("cpu")
with torch.no_grad():
    alone = sum(float(forward(model, batch, 0, cpu, trained))
                for s in samples for batch in micro_batches([s], 256))
    for budget in (256, 4096):
        batches = micro_batches(samples, budget)
        assert any(len(row) > 1 for b in batches for row in b.rows)  # really packed
        packed = sum(float(forward(model, b, 0, cpu, trained)) for b in batches)
        assert abs(packed - alone) < 1e-5 * alone, (budget, packed, alone)
print("isolated")
"""


def test_packed_samples_never_see_each_other() -> None:
    """The loss of samples packed into shared rows equals their losses alone: each sample
    attends only to itself (transformers' packed-sequence mask, which a KV cache disables)."""
    hf, _ = tiny_model()
    checked = subprocess.run(
        [str(ML_VENV / "bin" / "python"), "-c", PACKING, str(hf)],
        env={**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'appliance'}:{REPO_ROOT / 'tests'}"},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert "isolated" in checked.stdout


def test_two_processes_shard_the_model_and_resume_after_a_kill(
    appliance: Paths, train: Callable[[str], Run]
) -> None:
    """torchrun with two ranks on CPU (gloo), the model sharded with FSDP: the path GPUs take,
    one process a GPU. Rank 0 reports and writes; a kill and a restart resume."""
    # gpus: 0 keeps it on CPU ranks where there is a GPU too (on GPUs it is one rank a GPU).
    job = job_yaml("ranks", CHECKPOINT_EVERY) + "  processes: 2\n  gpus: 0\n"
    first = train(job)
    killed_at = 0
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and first.process.poll() is None:
        status = first.status(appliance)
        progress = status.get("progress") or {} if status.get("job") == "ranks" else {}
        if isinstance(progress, dict) and int(progress.get("step", 0)) >= 5:
            kill_tree(first.process.pid)
            killed_at = int(progress["step"])
            break
        time.sleep(0.05)
    first.process.wait()
    again = train(job)
    code, errors = again.finish()
    assert code == 0, errors
    assert "on CPU (2 processes), fp32" in errors
    ready = next(m for m in again.messages if "READY=1" in m)
    resumed = int(ready.split("resuming at phase 1 step ")[1].split()[0])
    assert killed_at - CHECKPOINT_EVERY <= resumed <= killed_at, (killed_at, ready)
    history = losses(result(appliance, "ranks")["history"])
    assert [(p, s) for p, s, _ in history][:3] == [(0, 1), (0, 2), (0, 3)]
    curve = [loss for p, _, loss in history if p == 0]
    assert sum(curve[-3:]) / 3 < sum(curve[:3]) / 3 * 0.9, curve
    # The same losses as one process: the ranks split the rows, not the numbers.
    whole = (
        losses(result(appliance, "whole")["history"])
        if (appliance.state / "checkpoints" / "whole" / "result.json").exists()
        else None
    )
    if whole is not None:
        for (_, step, expected), (_, _, got) in zip(whole, history, strict=True):
            assert got == pytest.approx(expected, rel=1e-3), step
    assert "tiny-ranks" in {r.name for r in model_store(appliance).records()}


def test_the_trained_model_is_served_by_name(appliance: Paths, tmp_path: Path) -> None:
    """`bootlab serve start NAME` for what training published: vLLM loads it and answers."""
    name = next(
        (r.name for r in model_store(appliance).records() if r.name.startswith("tiny-")), None
    )
    if name is None:  # this test alone: train a one-phase job first
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(str(tmp_path / "notify"))
        job = "train: {model: tiny, data: knowledge, output: tiny-served, max_seq_len: 256}\n"
        code, errors = Run(_start_train(appliance, tmp_path / "notify", job)).finish()
        listener.close()
        assert code == 0, errors
        name = "tiny-served"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    appliance.config_file.write_text(
        f"serve:\n  model: {name}\n  port: {port}\n  max_model_len: 256\n"
        "  vllm_args: [--gpu-memory-utilization, '0.3', --max-num-seqs, '4']\n"
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "bootlab.cli", "serve", "run"],
        env={
            **os.environ,
            "BOOTLAB_ROOT": str(appliance.root),
            "PYTHONPATH": str(REPO_ROOT / "appliance"),
            "VLLM_CPU_KVCACHE_SPACE": "1",
        },
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        listed: list[str] = []
        while time.monotonic() < deadline and not listed:
            assert server.poll() is None, "the server exited while loading"
            with contextlib.suppress(OSError, ValueError):
                state = json.loads((appliance.runtime / "serve.json").read_text())
                assert state["model"] == name
                models = f"{state['endpoint']}/models"
                with urllib.request.urlopen(models, timeout=5) as answer:  # noqa: S310 - ours
                    listed = [m["id"] for m in json.loads(answer.read())["data"]]
            time.sleep(0.5)
        assert listed == [name]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            data=json.dumps(
                {
                    "model": name,
                    "max_tokens": 4,
                    "messages": [{"role": "user", "content": "what is ba"}],
                }
            ).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 - ours
            assert json.loads(answer.read())["choices"][0]["message"]["content"] is not None
    finally:
        server.terminate()
        server.wait(90)
        appliance.config_file.unlink()
