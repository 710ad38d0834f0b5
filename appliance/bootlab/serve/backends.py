"""The serving backends, one class each: which model files it serves, and its command line.
A backend only serves a store path; it never fetches or changes the model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bootlab.config import Serve
from bootlab.errors import Exit, die

GGUF_MAGIC = b"GGUF"
_TOKENIZERS = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
_WEIGHTS = ("*.safetensors", "*.bin")


@dataclass(frozen=True)
class Target:
    """What to serve, and how, after preflight."""

    python: str  # the ML venv's interpreter
    model: Path
    name: str  # the name clients ask for: the store name
    serve: Serve
    gpus: int
    api_key: str | None


@dataclass(frozen=True)
class Launch:
    argv: tuple[str, ...]
    env: dict[str, str]  # secrets go here, never in argv (the process list shows argv)


def gguf_file(model: Path) -> Path | None:
    """The GGUF file of a model directory (or the model itself), by its magic bytes."""
    candidates = [model] if model.is_file() else sorted(model.glob("*.gguf"))
    for candidate in candidates:
        try:
            with candidate.open("rb") as handle:
                if handle.read(4) == GGUF_MAGIC:
                    return candidate
        except OSError:
            continue
    return None


def missing_for_vllm(model: Path) -> list[str]:
    """What a Hugging Face model directory lacks for vLLM; empty when it has it all."""
    missing = []
    if not (model / "config.json").is_file():
        missing.append("config.json")
    if not any((model / name).is_file() for name in _TOKENIZERS):
        missing.append("a tokenizer (" + ", ".join(_TOKENIZERS) + ")")
    if not any(any(model.glob(pattern)) for pattern in _WEIGHTS):
        missing.append("weights (" + ", ".join(_WEIGHTS) + ")")
    return missing


class Vllm:
    name = "vllm"
    module = "vllm"

    def launch(self, target: Target) -> Launch:
        serve = target.serve
        argv = [
            target.python, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(target.model), "--served-model-name", target.name,
            "--host", serve.host, "--port", str(serve.port),
        ]  # fmt: skip
        if serve.max_model_len:
            argv += ["--max-model-len", str(serve.max_model_len)]
        if target.gpus > 1:
            argv += ["--tensor-parallel-size", str(target.gpus)]
        env = {"VLLM_API_KEY": target.api_key} if target.api_key else {}
        return Launch((*argv, *serve.vllm_args), env)


class LlamaCpp:
    name = "llama-cpp"
    module = "llama_cpp"

    def launch(self, target: Target) -> Launch:
        serve = target.serve
        gguf = gguf_file(target.model)
        assert gguf is not None  # preflight chose this backend because there is one
        argv = [
            target.python, "-m", "llama_cpp.server", "--model", str(gguf),
            "--model_alias", target.name, "--host", serve.host, "--port", str(serve.port),
        ]  # fmt: skip
        if serve.max_model_len:
            argv += ["--n_ctx", str(serve.max_model_len)]
        if target.gpus:
            argv += ["--n_gpu_layers", "-1"]
        # llama_cpp.server reads its settings from the environment too (pydantic-settings).
        env = {"API_KEY": target.api_key} if target.api_key else {}
        return Launch((*argv, *serve.llama_cpp_args), env)


Backend = Vllm | LlamaCpp
BACKENDS: dict[str, Backend] = {"vllm": Vllm(), "llama-cpp": LlamaCpp()}


def choose(model: Path, configured: str) -> Backend:
    """The backend for these files: by content, unless the config names one."""
    gguf = gguf_file(model)
    if configured == "llama-cpp" or (configured == "auto" and gguf is not None):
        if gguf is None:
            raise die(
                f"serve.backend is llama-cpp, but model '{model.name}' has no GGUF file",
                hint="pull a GGUF build of the model, or set serve.backend: vllm",
                exit_code=Exit.NOT_CONFIGURED,
            )
        return BACKENDS["llama-cpp"]
    missing = missing_for_vllm(model) if model.is_dir() else ["a model directory"]
    if not missing:
        return BACKENDS["vllm"]
    lacks = "vLLM needs " if configured == "vllm" else "no GGUF file, and for vLLM it lacks "
    raise die(
        f"cannot serve model '{model.name}': {lacks}" + "; ".join(missing),
        hint="pull the complete model (`bootlab model inspect` lists its files)",
        exit_code=Exit.NOT_CONFIGURED,
    )
