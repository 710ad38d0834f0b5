# Sourced by the scripts: the project's podman settings (runc, nofile limits) and its venv.
BOOTLAB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$BOOTLAB_ROOT/.ci/containers.conf}"
export PATH="$BOOTLAB_ROOT/.venv/bin:$PATH"
