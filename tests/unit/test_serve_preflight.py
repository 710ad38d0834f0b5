"""Serving's preflight, every refusal provoked: each says what is wrong and what to do.
GPUs are absent here: their memory comes from a recorded real nvidia-smi (8x V100S)."""

from __future__ import annotations

import json
import os
import socket
import struct
from pathlib import Path

import pytest
from bootlab import gpu_lock
from bootlab.config import Config
from bootlab.errors import BootlabError
from bootlab.paths import Paths
from bootlab.serve import gguf, preflight
from bootlab.store.fetch import Progress
from bootlab.store.layout import model_store
from bootlab.store.sources import local
from bootlab.sysinfo import SystemInfo, parse_nvidia_smi_xml, probe, profile_for

pytestmark = pytest.mark.unit
DATA = Path(__file__).resolve().parents[1] / "data" / "sysinfo"


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    paths = Paths(tmp_path / "root")
    # A stand-in ML venv with both backends "installed": preflight looks for the packages.
    for module in ("vllm", "llama_cpp"):
        package = paths.ml_venv / "lib/python3.11/site-packages" / module
        package.mkdir(parents=True)
        (package / "__init__.py").touch()
    (paths.ml_venv / "bin").mkdir()
    (paths.ml_venv / "bin/python").symlink_to("/usr/bin/python3")
    return paths


def cpu() -> SystemInfo:
    return probe(Path("/"))


def v100s() -> SystemInfo:
    gpus = tuple(parse_nvidia_smi_xml((DATA / "nvidia-smi-q-x.8xV100S.xml").read_text()))
    return cpu().model_copy(update={"gpus": gpus, "profile": profile_for(gpus)})


def hf_model(directory: Path, *, weights: int = 1000, context: int = 2048) -> Path:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(
        json.dumps(
            {
                "max_position_embeddings": context,
                "num_hidden_layers": 32,
                "num_attention_heads": 32,
                "num_key_value_heads": 8,
                "hidden_size": 4096,
            }
        )
    )
    (directory / "tokenizer.json").write_text("{}")
    with (directory / "model.safetensors").open("wb") as handle:
        handle.truncate(weights)  # sparse: a 40 GB model costs no disk
    return directory


def gguf_model(path: Path, context: int = 2048) -> Path:
    """A GGUF header with metadata only: enough for detection and the context check."""

    def string(text: str) -> bytes:
        return struct.pack("<Q", len(text)) + text.encode()

    kvs = [
        (string("general.architecture") + struct.pack("<I", 8) + string("llama")),
        (string("llama.context_length") + struct.pack("<I", 4) + struct.pack("<I", context)),
    ]
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs))
    return path


def settings(**serve: object) -> Config:
    return Config.model_validate({"serve": {"port": free_port(), **serve}})


def free_port() -> int:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return int(probe_socket.getsockname()[1])


def imported(paths: Paths, source: Path, name: str) -> None:
    local.pull(str(source), name, model_store(paths), progress=Progress())


def refused(config: Config, paths: Paths, system: SystemInfo | None = None) -> BootlabError:
    with pytest.raises(BootlabError) as error:
        preflight.plan(config, paths, system or cpu())
    assert error.value.exit_code == 78 and error.value.hint
    return error.value


def test_backend_by_content(paths: Paths, tmp_path: Path) -> None:
    imported(paths, hf_model(tmp_path / "hf"), "hf")
    imported(paths, gguf_model(tmp_path / "tiny.gguf"), "tiny")
    backend, target = preflight.plan(settings(model="hf"), paths, cpu())
    assert backend.name == "vllm" and target.name == "hf"
    backend, _ = preflight.plan(settings(model="tiny"), paths, cpu())
    assert backend.name == "llama-cpp"
    assert gguf.context_length(model_store(paths).models / "tiny" / "tiny.gguf") == 2048


def test_missing_files_are_named(paths: Paths, tmp_path: Path) -> None:
    (tmp_path / "half").mkdir()
    (tmp_path / "half/config.json").write_text("{}")
    imported(paths, tmp_path / "half", "half")
    error = refused(settings(model="half"), paths)
    assert "no GGUF file, and for vLLM it lacks a tokenizer" in error.message
    assert "weights (*.safetensors, *.bin)" in error.message
    error = refused(settings(model="half", backend="llama-cpp"), paths)
    assert "has no GGUF file" in error.message


def test_nothing_configured_and_not_in_store(paths: Paths) -> None:
    assert "serve.model is not set" in refused(settings(), paths).message
    assert "not in the model store" in refused(settings(model="ghost"), paths).message


def test_context_longer_than_the_model(paths: Paths, tmp_path: Path) -> None:
    imported(paths, hf_model(tmp_path / "hf"), "hf")
    imported(paths, gguf_model(tmp_path / "t.gguf", context=512), "small")
    error = refused(settings(model="hf", max_model_len=8192), paths)
    assert "above what model 'hf' supports (2048" in error.message
    assert "max_model_len: 2048" in (error.hint or "")
    error = refused(settings(model="small", max_model_len=1024), paths)
    assert "supports (512" in error.message


def test_weights_beyond_the_gpus_suggest_tensor_parallel(tmp_path: Path) -> None:
    # The memory check on its own: a 40 GiB sparse model is free on disk, not to import.
    big = hf_model(tmp_path / "big", weights=40 * 2**30)
    with pytest.raises(BootlabError) as error:
        preflight.check_memory(big, settings(gpus=1).serve, v100s())
    assert "1 GPU(s) give" in error.value.message and "needs about 40." in error.value.message
    assert "serve.gpus: 2" in (error.value.hint or "")
    assert preflight.check_memory(big, settings(gpus=2).serve, v100s()) == 2
    with pytest.raises(BootlabError) as error:
        preflight.check_memory(big, settings(gpus=16).serve, v100s())
    assert "this machine has 8 GPU(s)" in error.value.message


def test_too_big_for_memory_without_gpus(tmp_path: Path) -> None:
    huge = hf_model(tmp_path / "huge", weights=4 * 2**40)
    with pytest.raises(BootlabError) as error:
        preflight.check_memory(huge, settings().serve, cpu())
    assert "of memory and this machine has" in error.value.message


def test_port_in_use(paths: Paths, tmp_path: Path) -> None:
    imported(paths, gguf_model(tmp_path / "t.gguf"), "tiny")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        error = refused(settings(model="tiny", port=port), paths)
    assert f"port {port} on 127.0.0.1 is already in use" in error.message


def test_backend_not_installed(tmp_path: Path) -> None:
    bare = Paths(tmp_path / "bare")
    imported(bare, gguf_model(tmp_path / "t.gguf"), "tiny")
    assert "backend llama-cpp is not installed" in refused(settings(model="tiny"), bare).message


def test_damaged_model_is_refused(paths: Paths, tmp_path: Path) -> None:
    imported(paths, gguf_model(tmp_path / "t.gguf"), "tiny")
    model = model_store(paths).models / "tiny" / "t.gguf"
    model.chmod(0o644)
    with model.open("ab") as handle:
        handle.write(b"extra")
    assert "is damaged" in refused(settings(model="tiny"), paths).message


def test_api_key_file_must_be_readable(paths: Paths, tmp_path: Path) -> None:
    imported(paths, gguf_model(tmp_path / "t.gguf"), "tiny")
    error = refused(settings(model="tiny", api_key_file=str(tmp_path / "none")), paths)
    assert "cannot read serve.api_key_file" in error.message
    (tmp_path / "key").write_text("s3cret\n")
    os.chmod(tmp_path / "key", 0o600)
    _, target = preflight.plan(
        settings(model="tiny", api_key_file=str(tmp_path / "key")), paths, cpu()
    )
    assert target.api_key == "s3cret"


def test_training_holds_the_gpus(tmp_path: Path) -> None:
    lock = tmp_path / "gpu.lock"
    held = gpu_lock.acquire(lock, "train")
    try:
        with pytest.raises(BootlabError) as error:
            gpu_lock.acquire(lock, "serve")
        assert error.value.message.startswith("training is running")
        assert "stop bootlab-train first" in error.value.message
    finally:
        os.close(held)
