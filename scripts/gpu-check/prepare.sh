#!/bin/bash
# Run here, before a GPU check: puts what the lent machine cannot download into .gpu/ (git
# ignores it) — the llama-cpp-python sdist without its test models and git history (76 MB
# to 7 MB), the wheels the appliance and llama.cpp's server need beyond that machine's
# torch image, and the tiny test model. Then, with the device tool:
#   run: bash scripts/gpu-check/run.sh 2>&1   carry: [".gpu"]   timeout_s: 540
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
grep -qx '/.gpu/' "$(git rev-parse --git-dir)/info/exclude" || echo /.gpu/ >>"$(git rev-parse --git-dir)/info/exclude"
rm -rf .gpu && mkdir -p .gpu/wheels
llama=0.3.36
sdist=$HOME/.cache/bootlab/sdists/llama_cpp_python-$llama.tar.gz
[ -f "$sdist" ] || python3 -m pip download -q --no-deps --no-binary :all: -d "$(dirname "$sdist")" "llama-cpp-python==$llama"
scratch=$(mktemp -d); trap 'rm -rf "$scratch"' EXIT
tar xzf "$sdist" -C "$scratch"
tree=$scratch/llama_cpp_python-$llama
rm -rf "$tree/.git" "$tree"/vendor/llama.cpp/{models,docs,examples,tests,pocs,.github,media,gguf-py,tools,app,conversion}
tar czf .gpu/llama.tar.gz -C "$scratch" "llama_cpp_python-$llama"
# Versions as in the ML venv here; the machine's image has numpy, jinja2, pyyaml, anyio, h11.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu/wheels fastapi==0.136.3 starlette==1.10.0 uvicorn==0.54.0 sse-starlette==3.7.0 \
  starlette-context==0.3.6 pydantic-settings==2.16.3 python-dotenv==1.2.4 diskcache==5.6.3 \
  pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
  annotated-doc==0.0.7
python3 -m tests.support.tiny_model
cp -a "$HOME/.cache/bootlab/tiny-model" .gpu/
du -sh .gpu
