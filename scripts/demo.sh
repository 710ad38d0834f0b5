#!/usr/bin/env bash
# The main job on the offline dev profile: build the image, boot it under systemd in a
# container, and show the appliance working inside it.
# Usage: bash scripts/demo.sh [--keep]   (--keep leaves the booted container running)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh

name=bootlab-demo
image=localhost/bootlab:dev
echo "‣ build: python build.py build --profile dev"
python build.py build --profile dev

echo "‣ boot: podman run --systemd=always $image"
podman rm -f "$name" >/dev/null 2>&1 || true
podman run -d --name "$name" --network host --systemd=always "$image" >/dev/null
state=starting
for _ in $(seq 60); do
  state=$(podman exec "$name" systemctl is-system-running 2>/dev/null || true)
  case "$state" in running|degraded) break ;; esac
  sleep 1
done
echo "  system state: $state"
podman exec "$name" systemctl --failed --no-legend || true
echo "‣ inside the booted image"
podman exec "$name" bootlab --version
echo "\$ bootlab status            (socket-activates bootlabd)"
podman exec "$name" bootlab status
echo "\$ bootlab system info"
podman exec "$name" bootlab system info
echo "\$ bootlab config init && bootlab config show"
podman exec "$name" sh -c 'bootlab config init --force >/dev/null && bootlab config show'
echo "\$ bootlab serve start       (no model yet: a clear refusal, not a failed mystery)"
podman exec "$name" bootlab serve start || true
podman exec "$name" systemctl reset-failed bootlab-serve.service
podman exec "$name" systemctl list-timers --no-pager bootlab-upgrade-informer.timer
if [ "${1:-}" = "--keep" ]; then
  echo "left running: podman exec -it $name bash   (stop: podman rm -f $name)"
else
  podman rm -f "$name" >/dev/null
fi
[ "$state" = running ]
