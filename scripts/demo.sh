#!/usr/bin/env bash
# The main job on the offline dev profile: build the image, boot it under systemd in a
# container, make a tiny model inside it, serve that model with vLLM and ask it a question.
# Usage: bash scripts/demo.sh [--keep]   (--keep leaves the booted container running)
#
# A container, not the VM (`build.py vm`): the same image and units, but vLLM runs at native
# speed. Under qemu's TCG (no nested KVM on these machines) everything runs 5-10x slower and
# takes both cores; vLLM's start alone would take minutes. The README says how to boot the VM.
set -euo pipefail
cd "$(dirname "$0")/.."
# No ML stack on the host: the model is made, served and asked inside the image.
bash scripts/setup.sh --no-ml-env
source scripts/env.sh

name=bootlab-demo
image=localhost/bootlab:dev
keep=${1:-}
step() { printf '‣ %s   [%dm%02ds]\n' "$1" $((SECONDS / 60)) $((SECONDS % 60)); }
inside() {  # show the command as typed, then run it in the booted image
  local shown='$' arg
  for arg; do if [[ $arg == *" "* ]]; then shown+=" \"$arg\""; else shown+=" $arg"; fi; done
  echo "$shown"
  podman exec "$name" "$@"
}

step "build: python build.py build --profile dev"
python build.py build --profile dev

step "boot: podman run --systemd=always $image"
podman rm -f "$name" >/dev/null 2>&1 || true
# --shm-size: vLLM's engine talks to its worker through /dev/shm, and podman's 64 MiB default
# is too small for it (a host or VM has half its memory there).
podman run -d --name "$name" --network host --shm-size 1g --systemd=always "$image" >/dev/null
trap '[ "$keep" = --keep ] || podman rm -f -t 5 "$name" >/dev/null 2>&1 || true' EXIT
state=starting
for _ in $(seq 60); do
  state=$(podman exec "$name" systemctl is-system-running 2>/dev/null || true)
  case "$state" in running|degraded) break ;; esac
  sleep 1
done
echo "  system state: $state"
podman exec "$name" systemctl --failed --no-legend
[ "$state" = running ]

step "a tiny model, made inside the image by its own ML stack (nothing from a hub)"
# Random weights (hidden 256, 2 layers, 512-token vocabulary): it answers, in gibberish.
log=$(mktemp)
python tests/tiny_model.py --script \
  | podman exec -i "$name" /usr/lib/bootlab/ml/bin/python - /var/tmp/tiny >"$log" 2>&1 \
  || { cat "$log"; exit 1; }
inside bootlab model pull /var/tmp/tiny/hf --name tiny

step "serve it: a Hugging Face directory, so the vLLM backend"
# vLLM on a CPU: eager mode (torch.compile would need a C++ compiler in the image) and a
# fixed 1 GiB KV cache (by default it takes a share of all memory, which is slow to set up).
port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
podman exec -i "$name" sh -c 'cat > /etc/bootlab/config.yaml' <<EOF
serve:
  model: tiny
  port: $port
  max_model_len: 512
  vllm_args: [--enforce-eager, --kv-cache-memory-bytes, 1G, --max-num-seqs, "4"]
EOF
inside cat /etc/bootlab/config.yaml
inside bootlab serve start      # returns once the model answers
inside bootlab chat -q "What is a bootable container image?" --max-tokens 32
echo "  (a random tiny model: the words are noise, the path through the appliance is real)"
inside bootlab status
step "done"
if [ "$keep" = --keep ]; then
  echo "left running: podman exec -it $name bash   (stop: podman rm -f $name)"
fi
