"""Benchmark: bootlab-serve's cost over a bare server, on the tiny model: vLLM on CPU here,
or `--backend llama-cpp` (its GGUF on llama.cpp, every layer on the GPU where there is one).

Each of 6 rounds starts two servers, one after the other, each while the other is idle: a
bare `python -m vllm.entrypoints.openai.api_server` started by hand, timed to its first
answer on /v1/models, and `bootlab serve run` (the unit's entrypoint: preflight, GPU lock,
a supervisor starting the same vLLM command: same interpreter, model directory and
arguments), timed until it tells systemd READY (on a NOTIFY_SOCKET of ours), which it does
once its vLLM answers. Which one starts first alternates per round; one untimed start
before the rounds warms vLLM's compile caches for both.

With both up, each gets one warm-up burst, then 6 pairs of bursts: the same request load
(24 chat completions of 64 tokens, 4 at a time, straight to vLLM in both cases) to one
server, then to the other, each burst's completion tokens a second counted. Each burst
waits until the CPUs are quiet: after a burst, vLLM's CPU worker spins on a core for about
a second (measured: 1 CPU-second in the 2 s after a burst, 0.1 a second when idle), and a
burst sent into that spin ran up to 3x slower, which made single pairs read 0.3 to 3.
The order alternates per pair (A,B,B,A), so the machine's drift reaches both sides alike.
Single bursts still vary by +-30% here, and within a round the server started second often
serves 5 to 15% faster (both pin their worker to the same core; seen with two bare servers
too), so no single pair or round says much. The rounds alternate the start order, and
throughput_ratio is the ratio of the two sides' medians over all bursts of all rounds: each
side has as many bursts from rounds that favour it as from rounds that don't, and the
medians drop the bursts that the machine's noise hits. ready_ratio is the median of the
rounds' ready-time ratios.

`--control` starts a second bare server where bootlab's would be: what the bench reads
when nothing differs, its noise floor (one run here read 1.058). Since timing cannot show a
2% difference on this machine, each round also compares how the two backends were started,
from /proc: argv (ports aside), environment (bootlab's own BOOTLAB_ROOT and NOTIFY_SOCKET
aside), CPU affinity, nice, rlimits and cgroup; launch_differences lists what differed.

With llama.cpp the same holds with `python -m llama_cpp.server` for vLLM's command.
`--rounds` and `--pairs` shorten a run (a GPU machine's minutes are few); both stay even.

Prints one JSON object as its last stdout line: backend, device, bare_ready_s,
bootlab_ready_s, ready_ratio (goal <= 1.05), bare_tok_s, bootlab_tok_s, throughput_ratio
(goal >= 0.98), launch_differences (goal: none); stderr gets each round's ready times and
pair ratios.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "appliance")]

from bootlab.paths import Paths  # noqa: E402
from bootlab.serve.backends import gguf_file  # noqa: E402
from bootlab.store.layout import model_store  # noqa: E402
from bootlab.sysinfo import probe  # noqa: E402
from tiny_model import appliance_with_tiny_model  # noqa: E402

ROUNDS, PAIRS = 6, 6  # even numbers: each side starts first, and bursts first, as often
REQUESTS, CONCURRENCY, TOKENS = 24, 4, 64
QUIET_BUSY, QUIET_WAIT_S = 0.15, 5.0  # a burst starts once the CPUs are this idle (or after)
VLLM_ARGS = ["--max-model-len", "512", "--gpu-memory-utilization", "0.3", "--max-num-seqs", "4"]
ENV = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONPATH": str(ROOT / "appliance")}
SIDES = ("bare", "bootlab")
BySide = dict[str, float]  # a ready time or a burst's tokens a second, per side


@dataclasses.dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    ready_s: float
    notify: socket.socket | None = None  # open while it runs: the supervisor notifies on stop

    def stop(self) -> None:
        stop(self.process)
        if self.notify is not None:
            self.notify.close()
        orphaned = answers(self.port, "tiny")  # a supervisor that died, leaving its backend
        with contextlib.suppress(ProcessLookupError):  # its own session: nothing outlives it
            os.killpg(self.process.pid, signal.SIGKILL)
        if orphaned:
            sys.exit(f"a backend on port {self.port} still answered after its server stopped")


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


def exited(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        sys.exit(f"the server exited ({process.returncode}) before answering")


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields) - idle, sum(fields)


def wait_quiet() -> None:
    """Until the CPUs are nearly idle over a quarter second: the last burst's server has
    stopped spinning. Gives up after QUIET_WAIT_S on a machine that is never quiet."""
    deadline = time.monotonic() + QUIET_WAIT_S
    while time.monotonic() < deadline:
        busy, total = cpu_times()
        time.sleep(0.25)
        busy_after, total_after = cpu_times()
        if (busy_after - busy) <= QUIET_BUSY * max(total_after - total, 1):
            return


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

    wait_quiet()
    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        started = time.perf_counter()
        tokens = sum(pool.map(one, range(REQUESTS)))
        return tokens / (time.perf_counter() - started)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(90)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_bare(setup: Setup) -> Server:
    """The bare server, timed from its start to its first answer."""
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        setup.bare_argv(port),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = Server(process, port, 0.0)
    try:
        while not answers(port, "tiny"):
            exited(process)
            time.sleep(0.05)
        server.ready_s = time.perf_counter() - started
    except BaseException:
        server.stop()
        raise
    return server


def start_bootlab(setup: Setup, paths: Paths) -> Server:
    """`bootlab serve run`, timed from its start until it tells systemd READY."""
    port = free_port()
    paths.config_file.write_text(setup.config(port))
    address = paths.root / "notify.sock"
    address.unlink(missing_ok=True)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(address))
    notify.settimeout(0.05)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "bootlab.cli", "serve", "run"],
        env={**ENV, "BOOTLAB_ROOT": str(paths.root), "NOTIFY_SOCKET": str(address)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = Server(process, port, 0.0, notify)
    try:
        while True:
            try:
                if "READY=1" in notify.recv(4096).decode().split("\n"):
                    break
            except TimeoutError:
                exited(process)
        server.ready_s = time.perf_counter() - started
        if not answers(port, "tiny"):
            sys.exit("bootlab serve run said READY, but its server does not answer")
    except BaseException:
        server.stop()
        raise
    return server


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
    index: int, setup: Setup, paths: Paths, pairs: int, *, control: bool
) -> tuple[BySide, list[BySide], list[str]]:
    """One round: both servers started one after the other (the first idle while the second
    starts; which is first alternates), then `pairs` pairs of bursts; their ready times and
    the bursts' tokens a second."""
    order = SIDES if index % 2 == 0 else SIDES[::-1]
    servers: dict[str, Server] = {}
    try:
        for side in order:
            if side == "bare" or control:
                servers[side] = start_bare(setup)
            else:
                servers[side] = start_bootlab(setup, paths)
        if setup.gpus and index == 0:
            print(f"on the GPU with both servers up:\n{on_gpu()}", file=sys.stderr)
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
    finally:
        for server in servers.values():
            server.stop()


# What `bootlab serve run` sets for its backend on purpose; anything else in the backend's
# environment must be the bare server's.
BOOTLAB_ENV = {"BOOTLAB_ROOT", "NOTIFY_SOCKET"}


def server_pid(server: Server) -> int:
    """The backend's own process: the bare server itself, or the supervisor's child."""
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    found = children.read_text().split() if server.notify is not None else []
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
    bare, ours = (launch(server_pid(servers[side]), servers[side].port) for side in SIDES)
    return [key for key in bare if bare[key] != ours[key]]


def medians(bursts: list[BySide]) -> BySide:
    """Each side's median tokens a second over these bursts."""
    return {side: statistics.median(burst[side] for burst in bursts) for side in SIDES}


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("vllm", "llama-cpp"), default="vllm")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--pairs", type=int, default=PAIRS)
    parser.add_argument("--control", action="store_true", help="bare against bare")
    args = parser.parse_args()
    if args.rounds < 2 or args.rounds % 2 or args.pairs < 2 or args.pairs % 2:
        parser.error("--rounds and --pairs must be even and at least 2")
    return args


def main() -> None:
    args = arguments()
    with tempfile.TemporaryDirectory(prefix="bootlab-serve-") as scratch:
        # One model, "tiny", in the form the backend serves.
        vllm = args.backend == "vllm"
        paths = appliance_with_tiny_model(
            Path(scratch), hf_as="tiny" if vllm else None, gguf_as=None if vllm else "tiny"
        )
        store = model_store(paths)
        gpus = probe(Path(scratch)).gpus  # what bootlab's preflight sees too
        # The bare server runs the very command bootlab runs: the ML venv's interpreter by
        # the appliance's path, the store's model directory. vLLM's compile caches key on
        # both paths (the model's, and the sources' under the venv), so this untimed start
        # warms them for both sides alike.
        setup = Setup(args.backend, paths.ml_venv / "bin/python", store.models / "tiny", len(gpus))
        start_bare(setup).stop()
        readies: list[BySide] = []
        bursts: list[BySide] = []
        differences: set[str] = set()
        for index in range(args.rounds):
            ready, round_bursts, round_differences = round_of(
                index, setup, paths, args.pairs, control=args.control
            )
            differences.update(round_differences)
            readies.append(ready)
            bursts.extend(round_bursts)
            shown = {side: round(seconds, 2) for side, seconds in ready.items()}
            round_tok_s = medians(round_bursts)
            print(
                f"round {index + 1}: ready_s {shown}; throughput ratio of medians "
                f"{round_tok_s['bootlab'] / round_tok_s['bare']:.3f}, of the pairs "
                f"{[round(b['bootlab'] / b['bare'], 3) for b in round_bursts]}",
                file=sys.stderr,
            )
    tok_s = medians(bursts)
    print(
        json.dumps(
            {
                "backend": args.backend,
                "device": gpus[0].name if gpus else "cpu",
                "bare_ready_s": round(statistics.median(r["bare"] for r in readies), 2),
                "bootlab_ready_s": round(statistics.median(r["bootlab"] for r in readies), 2),
                "ready_ratio": round(
                    statistics.median(r["bootlab"] / r["bare"] for r in readies), 3
                ),
                "bare_tok_s": round(tok_s["bare"], 1),
                "bootlab_tok_s": round(tok_s["bootlab"], 1),
                "throughput_ratio": round(tok_s["bootlab"] / tok_s["bare"], 3),
                # argv, environment, CPUs, nice, rlimits, cgroup of the two backends
                "launch_differences": sorted(differences),
                **({"control": True} if args.control else {}),
                "goals": {"ready_ratio": 1.05, "throughput_ratio": 0.98},
            }
        )
    )


if __name__ == "__main__":
    main()
