"""Everything that can be checked before a GPU is touched, each with its own message: the
model is there and intact, a backend can serve its files, the context fits the model, the
weights fit the GPUs (or the memory), the port is free, and an API key file is readable."""

from __future__ import annotations

import errno
import math
import socket
from pathlib import Path

from bootlab import text
from bootlab.apikey import read_api_key
from bootlab.config import Config, Serve
from bootlab.errors import Exit, die
from bootlab.modelinfo import hf_config, weights_bytes
from bootlab.paths import Paths
from bootlab.serve import gguf
from bootlab.serve.backends import Backend, Target, choose, gguf_file
from bootlab.sysinfo import SystemInfo
from bootlab.workload.launch import gpu_count, ml_python, store_model

USABLE_VRAM = 0.9  # what a backend can really use of a GPU's memory


def plan(config: Config, paths: Paths, system: SystemInfo) -> tuple[Backend, Target]:
    serve = config.serve
    model = store_model(config, paths, serve.model, "serve.model", "serve")
    assert serve.model is not None
    backend = choose(model.resolve(), serve.backend)
    python = ml_python(
        paths,
        backend.module,
        f"backend {backend.name}",
        "choose another backend in serve.backend, or use an image profile that ships it",
    )
    _check_context(model, serve)
    gpus = check_memory(model, serve, system)
    _check_port(serve)
    return backend, Target(python, model, serve.model, serve, gpus, _api_key(serve))


def model_context(model: Path) -> int | None:
    """The longest context the model supports, from config.json or the GGUF metadata."""
    limit = hf_config(model).get("max_position_embeddings")
    if isinstance(limit, int):
        return limit
    found = gguf_file(model)
    if found is not None:
        try:
            return gguf.context_length(found)
        except (OSError, gguf.GgufError):
            return None
    return None


def _check_context(model: Path, serve: Serve) -> None:
    limit = model_context(model)
    if serve.max_model_len and limit and serve.max_model_len > limit:
        raise die(
            f"serve.max_model_len {serve.max_model_len} is above what model "
            f"'{model.name}' supports ({limit}, its max_position_embeddings)",
            hint=f"set serve.max_model_len: {limit} or less",
            exit_code=Exit.NOT_CONFIGURED,
        )


def kv_cache_bytes(model: Path, context: int) -> int:
    """One sequence's KV cache at full context, in 16-bit: 2 * layers * KV heads * head
    dimension * context * 2 bytes. Zero when config.json does not say."""
    config = hf_config(model)
    layers = config.get("num_hidden_layers")
    heads = config.get("num_attention_heads")
    hidden = config.get("hidden_size")
    if not all(isinstance(v, int) and v > 0 for v in (layers, heads, hidden)):
        return 0
    assert isinstance(layers, int) and isinstance(heads, int) and isinstance(hidden, int)
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or hidden // heads
    return 2 * layers * int(kv_heads) * int(head_dim) * context * 2


def check_memory(model: Path, serve: Serve, system: SystemInfo) -> int:
    """The GPU count to use; refuses when the weights and one full-context sequence's KV
    cache cannot fit, and says what would."""
    weights = weights_bytes(model)
    context = serve.max_model_len or model_context(model) or 4096
    need = weights + kv_cache_bytes(model, context)
    available = len(system.gpus)
    if not available:
        usable = system.memory_total_mib * 2**20 * USABLE_VRAM
        if need > usable:
            raise die(
                f"model '{model.name}' needs about {text.size(need)} of memory and this "
                f"machine has {text.size(system.memory_total_mib * 2**20)}",
                hint="serve a smaller or quantized (GGUF) model, or lower serve.max_model_len",
                exit_code=Exit.NOT_CONFIGURED,
            )
        return 0
    gpus = gpu_count("serve.gpus", serve.gpus, system)
    per_gpu = min(gpu.memory_mib for gpu in system.gpus) * 2**20 * USABLE_VRAM
    if per_gpu and need / gpus > per_gpu:
        enough = math.ceil(need / per_gpu)
        advice = (
            f"serve it on {enough} GPUs (serve.gpus: {enough}, tensor parallel)"
            if enough <= available
            else "use a smaller or quantized model"
        )
        raise die(
            f"model '{model.name}' needs about {text.size(need)} (weights plus the KV cache "
            f"of a {context}-token context); {gpus} GPU(s) give {text.size(per_gpu * gpus)}",
            hint=f"{advice}, or lower serve.max_model_len",
            exit_code=Exit.NOT_CONFIGURED,
        )
    return gpus


def _check_port(serve: Serve) -> None:
    family = socket.AF_INET6 if ":" in serve.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((serve.host, serve.port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise die(
                    f"port {serve.port} on {serve.host} is already in use",
                    hint=f"stop what listens there (ss -ltnp 'sport = :{serve.port}') or set "
                    "serve.port",
                    exit_code=Exit.NOT_CONFIGURED,
                ) from None
            raise die(
                f"cannot listen on {serve.host}:{serve.port}: {error.strerror}",
                hint="check serve.host",
                exit_code=Exit.NOT_CONFIGURED,
            ) from None


def _api_key(serve: Serve) -> str | None:
    if serve.api_key_file is None:
        return None
    return read_api_key(
        serve.api_key_file,
        setting="serve.api_key_file",
        hint="create it (one line, mode 0600), or remove serve.api_key_file",
    )
