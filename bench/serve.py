"""Benchmark: bootlab-serve's cost over a bare server, on the tiny model: vLLM on CPU here,
or `--backend llama-cpp` (its GGUF on llama.cpp, every layer on the GPU where there is one).

Each of 4 rounds starts three servers, one after the other, each while the others are idle
and once the CPUs are quiet: a bare `python -m vllm.entrypoints.openai.api_server` started
by hand, timed to its first answer on /v1/models; `bootlab serve run` (the unit's
entrypoint: preflight, GPU lock, a supervisor starting the same vLLM command: same
interpreter, model directory and arguments), timed until it tells systemd READY (on a
NOTIFY_SOCKET of ours), which it does once its vLLM answers; and the control, a second bare
server where nothing differs from the first. The start order alternates per round (bare,
bootlab, control, then control, bootlab, bare); one untimed start before the rounds warms
vLLM's compile caches for all.

With all three up, each gets one warm-up burst, then 4 sets of bursts: the same request
load (24 chat completions of 64 tokens, 4 at a time, straight to vLLM in every case) to
each server in turn, each burst's completion tokens a second counted. Each burst waits
until the CPUs are quiet: after a burst, vLLM's CPU worker spins on a core for about a
second (measured: 1 CPU-second in the 2 s after a burst, 0.1 a second when idle), and a
burst sent into that spin ran up to 3x slower, which made single pairs read 0.3 to 3. The
order within a round alternates per set (bare, bootlab, control, then the other way), so
the machine's drift reaches all sides alike. Single bursts still vary by +-30% here, and
within a round a server started later often serves 5 to 15% faster (they pin their worker
to the same core; seen with bare servers alone too), so no single burst or round says
much: throughput_ratio (= ratio) is the ratio of the two sides' medians over all bursts of
all rounds, its spread the lowest and highest of the rounds' own ratios of medians, and
control the same ratio for the second bare server against the first: the noise floor,
measured in the same run (an earlier, separate bare-against-bare run read 1.058).
ready_ratio is the median of the rounds' ready-time ratios, with ready_spread and
ready_control beside it.

Since timing cannot show a 2% difference on this machine, each round also compares how the
bare and bootlab's backends were started, from /proc: argv (ports aside), environment
(bootlab's own BOOTLAB_ROOT and NOTIFY_SOCKET aside), CPU affinity, nice, rlimits and
cgroup; launch_differences lists what differed.

With llama.cpp the same holds with `python -m llama_cpp.server` for vLLM's command.
`--rounds` and `--pairs` (sets of bursts a round) shorten a run (a GPU machine's minutes are
few); both stay even. `--quick`: one round of one set, no warm-up start.

Prints one JSON object as its last stdout line: backend, device, bare_ready_s,
bootlab_ready_s, ready_ratio (goal <= 1.05), bare_tok_s, bootlab_tok_s, throughput_ratio
(goal >= 0.98), ratio, spread, control, launch_differences (goal: none); stderr gets each
round's ready times and ratios.

Usage: python -m bench.serve [--quick] [--backend vllm|llama-cpp] [--rounds N] [--pairs N]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bootlab.paths import Paths
from bootlab.serve.backends import gguf_file
from bootlab.store.layout import model_store
from bootlab.sysinfo import probe

from bench import harness
from tests.support.tiny_model import appliance_with_tiny_model

ROOT = Path(__file__).resolve().parent.parent
ROUNDS, PAIRS = 4, 4  # even numbers: each side starts first, and bursts first, as often
REQUESTS, CONCURRENCY, TOKENS = 24, 4, 64
VLLM_ARGS = ["--max-model-len", "512", "--gpu-memory-utilization", "0.3", "--max-num-seqs", "4"]
SIDES = ("bare", "bootlab", "control")  # control: a second bare server
# Quiet enough for the next burst: an idle vLLM here uses 0.1 CPU-second a second, so three
# idle ones alone are 15% of two CPUs; a worker still spinning after a burst adds 50%.
QUIET_BUSY = 0.25
BySide = dict[str, float]  # a ready time or a burst's tokens a second, per side


@dataclasses.dataclass
class Server:
    process: subprocess.Popen[Any]
    port: int
    ready_s: float
    supervised: bool = False  # bootlab's: the backend is the supervisor's child


@dataclasses.dataclass(frozen=True)
class Setup:
    """What differs between the backends: the bare command, bootlab's config, the request."""

    backend: str  # "vllm" or "llama-cpp"
    python: Path  # the ML venv's, which bootlab runs too
    model: Path  # in the store
    gpus: int

    def bare_argv(self, port: int) -> list[str]:
        listen = ["--host", "127.0.0.1", "--port", str(port)]
        if self.backend == "vllm":
            return [
                str(self.python), "-m", "vllm.entrypoints.openai.api_server",
                "--model", str(self.model), "--served-model-name", "tiny", *listen, *VLLM_ARGS,
            ]  # fmt: skip
        offload = ["--n_gpu_layers", "-1"] if self.gpus else []  # as bootlab does on GPUs
        return [
            str(self.python), "-m", "llama_cpp.server", "--model", str(gguf_file(self.model)),
            "--model_alias", "tiny", *listen, "--n_ctx", "512", *offload,
        ]  # fmt: skip

    def config(self, port: int) -> str:
        config = f"serve:\n  model: tiny\n  port: {port}\n  max_model_len: 512\n"
        if self.backend == "vllm":
            config += f"  vllm_args: {json.dumps(VLLM_ARGS[2:])}\n"
        return config

    def request(self) -> dict[str, object]:
        """Every request generates all its tokens: the tiny model's EOS (id 2) is off."""
        if self.backend == "vllm":
            return {"ignore_eos": True}
        return {"logit_bias": {"2": -100}}  # llama.cpp has no ignore_eos


def backend_env() -> dict[str, str]:
    """Both sides' environment: read when a server starts (the harness sets its own)."""
    return {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONPATH": str(ROOT / "appliance")}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(port: int, model: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as reply:
            return any(m["id"] == model for m in json.loads(reply.read())["data"])
    except OSError:
        return False


def exited(process: subprocess.Popen[Any]) -> None:
    if process.poll() is not None:
        sys.exit(f"the server exited ({process.returncode}) before answering")


def orphaned(port: int) -> None:
    """A supervisor that died leaving its backend: it would still answer."""
    if answers(port, "tiny"):
        sys.exit(f"a backend on port {port} still answered after its server stopped")


def load(setup: Setup, port: int) -> float:
    """Completion tokens a second under one burst of concurrent requests."""
    body = json.dumps(
        {
            "model": "tiny",
            "max_tokens": TOKENS,
            "messages": [{"role": "user", "content": "tell me a story"}],
            **setup.request(),
        }
    ).encode()

    def one(_: int) -> int:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=300) as reply:  # noqa: S310 - loopback
            return int(json.loads(reply.read())["usage"]["completion_tokens"])

    harness.wait_quiet(busy=QUIET_BUSY)
    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        started = time.perf_counter()
        tokens = sum(pool.map(one, range(REQUESTS)))
        return tokens / (time.perf_counter() - started)


@contextlib.contextmanager
def bare_server(bench: harness.Bench, setup: Setup) -> Iterator[Server]:
    """The bare server, timed from its start to its first answer."""
    port = free_port()
    started = time.perf_counter()
    with bench.spawn(
        setup.bare_argv(port),
        env=backend_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stop_timeout=90,
    ) as process:
        while not answers(port, "tiny"):
            exited(process)
            time.sleep(0.05)
        yield Server(process, port, time.perf_counter() - started)
    orphaned(port)


def listen(notify: socket.socket, ready: threading.Event, done: threading.Event) -> None:
    """Read `bootlab serve run`'s notifications for as long as it runs: READY sets `ready`,
    and the rest (WATCHDOG=1 every 15 s) is read too, or the socket's queue fills and the
    supervisor blocks in its next notify, deaf to SIGTERM."""
    while not done.is_set():
        try:
            message = notify.recv(4096).decode()
        except TimeoutError:
            continue
        except OSError:
            return
        if "READY=1" in message.split("\n"):
            ready.set()


@contextlib.contextmanager
def bootlab_server(bench: harness.Bench, setup: Setup, paths: Paths) -> Iterator[Server]:
    """`bootlab serve run`, timed from its start until it tells systemd READY."""
    port = free_port()
    paths.config_file.write_text(setup.config(port))
    address = paths.root / "notify.sock"
    address.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(address))
        notify.settimeout(0.05)
        ready, done = threading.Event(), threading.Event()
        listener = threading.Thread(target=listen, args=(notify, ready, done), daemon=True)
        listener.start()
        env = {**backend_env(), "BOOTLAB_ROOT": str(paths.root), "NOTIFY_SOCKET": str(address)}
        started = time.perf_counter()
        try:
            with bench.spawn(
                [sys.executable, "-m", "bootlab.cli", "serve", "run"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stop_timeout=90,
            ) as process:
                while not ready.wait(0.05):
                    exited(process)
                ready_s = time.perf_counter() - started
                if not answers(port, "tiny"):
                    sys.exit("bootlab serve run said READY, but its server does not answer")
                yield Server(process, port, ready_s, supervised=True)
        finally:  # the supervisor notifies until it has stopped
            done.set()
            listener.join()
    orphaned(port)


def on_gpu() -> str:
    """What the GPUs hold now, by process (nvidia-smi's own words), as evidence of offload."""
    result = subprocess.run(
        ["nvidia-smi", "--query-compute-apps=pid,process_name,used_memory", "--format=csv"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or result.stderr.strip()


def round_of(
    bench: harness.Bench, index: int, setup: Setup, paths: Paths, pairs: int
) -> tuple[BySide, list[BySide], list[str]]:
    """One round: the three servers started one after the other (the others idle while one
    starts; the order alternates), then `pairs` sets of bursts; their ready times and the
    bursts' tokens a second."""
    order = SIDES if index % 2 == 0 else SIDES[::-1]
    with contextlib.ExitStack() as stack:
        servers: dict[str, Server] = {}
        for side in order:
            harness.wait_quiet(busy=QUIET_BUSY)
            if side == "bootlab":
                server = bootlab_server(bench, setup, paths)
            else:
                server = bare_server(bench, setup)
            servers[side] = stack.enter_context(server)
        if setup.gpus and index == 0:
            print(f"on the GPU with all servers up:\n{on_gpu()}", file=sys.stderr)
        differences = launch_differences(servers)
        for side in order:
            load(setup, servers[side].port)  # warm-up: first requests pay for caches either way
        bursts = []
        for pair in range(pairs):
            burst: BySide = {}
            for side in order if pair % 2 == 0 else order[::-1]:
                burst[side] = load(setup, servers[side].port)
            bursts.append(burst)
        return {side: server.ready_s for side, server in servers.items()}, bursts, differences


# What `bootlab serve run` sets for its backend on purpose; anything else in the backend's
# environment must be the bare server's.
BOOTLAB_ENV = {"BOOTLAB_ROOT", "NOTIFY_SOCKET"}


def server_pid(server: Server) -> int:
    """The backend's own process: the bare server itself, or the supervisor's child."""
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    found = children.read_text().split() if server.supervised else []
    return int(found[0]) if found else server.process.pid


def launch(pid: int, port: int) -> dict[str, object]:
    """How the kernel runs a process: what could make one vLLM slower than another."""
    proc = Path(f"/proc/{pid}")
    environ = dict(
        entry.split("=", 1)
        for entry in proc.joinpath("environ").read_text().split("\0")
        if "=" in entry
    )
    argv = proc.joinpath("cmdline").read_text().split("\0")
    return {
        "argv": [arg if arg != str(port) else "PORT" for arg in argv],
        "environ": {k: v for k, v in environ.items() if k not in BOOTLAB_ENV},
        "cpus": sorted(os.sched_getaffinity(pid)),
        "nice": os.getpriority(os.PRIO_PROCESS, pid),
        "limits": proc.joinpath("limits").read_text(),
        "cgroup": proc.joinpath("cgroup").read_text(),
    }


def launch_differences(servers: dict[str, Server]) -> list[str]:
    """What differs between how the two backends were started (nothing, when bootlab adds
    nothing to the data path)."""
    bare, ours = (launch(server_pid(servers[side]), servers[side].port) for side in SIDES[:2])
    return [key for key in bare if bare[key] != ours[key]]


def medians(bursts: list[BySide]) -> BySide:
    """Each side's median tokens a second over these bursts."""
    return {side: statistics.median(burst[side] for burst in bursts) for side in SIDES}


def arguments() -> argparse.Namespace:
    parser = harness.parser(__doc__)
    parser.add_argument("--backend", choices=("vllm", "llama-cpp"), default="vllm")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--pairs", type=int, default=PAIRS, help="sets of bursts a round")
    args = parser.parse_args()
    if args.quick:
        args.rounds = args.pairs = 1
    elif args.rounds < 2 or args.rounds % 2 or args.pairs < 2 or args.pairs % 2:
        parser.error("--rounds and --pairs must be even and at least 2")
    return args


def measure(bench: harness.Bench, args: argparse.Namespace) -> dict[str, object]:
    # One model, "tiny", in the form the backend serves.
    vllm = args.backend == "vllm"
    paths = appliance_with_tiny_model(
        bench.root / "root", hf_as="tiny" if vllm else None, gguf_as=None if vllm else "tiny"
    )
    store = model_store(paths)
    gpus = probe(bench.root).gpus  # what bootlab's preflight sees too
    # The bare server runs the very command bootlab runs: the ML venv's interpreter by
    # the appliance's path, the store's model directory. vLLM's compile caches key on
    # both paths (the model's, and the sources' under the venv), so this untimed start
    # warms them for all sides alike.
    setup = Setup(args.backend, paths.ml_venv / "bin/python", store.models / "tiny", len(gpus))
    if not bench.quick:
        with bare_server(bench, setup):
            pass
    readies: list[BySide] = []
    bursts: list[BySide] = []
    rounds: list[BySide] = []  # each round's ratios of medians: throughput, control
    differences: set[str] = set()
    for index in range(args.rounds):
        bench.note(f"round {index + 1}/{args.rounds}: starting the servers")
        ready, round_bursts, round_differences = round_of(bench, index, setup, paths, args.pairs)
        differences.update(round_differences)
        readies.append(ready)
        bursts.extend(round_bursts)
        tok_s = medians(round_bursts)
        rounds.append({side: tok_s[side] / tok_s["bare"] for side in SIDES[1:]})
        shown = {side: round(seconds, 2) for side, seconds in ready.items()}
        bench.note(
            f"round {index + 1}: ready_s {shown}; throughput ratio of medians "
            f"{rounds[-1]['bootlab']:.3f} (control {rounds[-1]['control']:.3f}), of the "
            f"sets {[round(b['bootlab'] / b['bare'], 3) for b in round_bursts]}"
        )
    tok_s = medians(bursts)
    ready_ratios = {side: [r[side] / r["bare"] for r in readies] for side in SIDES[1:]}
    throughput = round(tok_s["bootlab"] / tok_s["bare"], 3)
    return {
        "backend": args.backend,
        "device": gpus[0].name if gpus else "cpu",
        "bare_ready_s": round(statistics.median(r["bare"] for r in readies), 2),
        "bootlab_ready_s": round(statistics.median(r["bootlab"] for r in readies), 2),
        "ready_ratio": round(statistics.median(ready_ratios["bootlab"]), 3),
        "ready_spread": harness.spread(ready_ratios["bootlab"]),
        "ready_control": round(statistics.median(ready_ratios["control"]), 3),
        "bare_tok_s": round(tok_s["bare"], 1),
        "bootlab_tok_s": round(tok_s["bootlab"], 1),
        "control_tok_s": round(tok_s["control"], 1),
        "throughput_ratio": throughput,
        "ratio": throughput,
        "spread": harness.spread([r["bootlab"] for r in rounds]),
        "control": round(tok_s["control"] / tok_s["bare"], 3),
        "control_spread": harness.spread([r["control"] for r in rounds]),
        "pairs": len(bursts),
        # argv, environment, CPUs, nice, rlimits, cgroup of the two backends
        "launch_differences": sorted(differences),
        "goals": {"ready_ratio": 1.05, "throughput_ratio": 0.98},
    }


def main() -> None:
    args = arguments()
    harness.main("serve", lambda bench: measure(bench, args), quick=args.quick)


if __name__ == "__main__":
    main()
