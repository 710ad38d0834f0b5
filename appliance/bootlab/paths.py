"""Where the appliance keeps things, following bootc's rules: /usr is read-only, /etc is the
admin's (merged across upgrades), /var persists, /run is gone at reboot."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    # Everything hangs off one root so tests and benchmarks run a whole appliance in a tmp dir.
    root: Path = Path("/")

    @classmethod
    def from_env(cls) -> Paths:
        return cls(Path(os.environ.get("BOOTLAB_ROOT", "/")))

    @property
    def ml_venv(self) -> Path:
        """The image's ML stack (vLLM, torch, ...), read-only."""
        return self.root / "usr/lib/bootlab/ml"

    @property
    def defaults_file(self) -> Path:
        """The image's defaults, replaced by each upgrade."""
        return self.root / "usr/share/bootlab/config.yaml"

    @property
    def config_file(self) -> Path:
        """The admin's settings, over the defaults."""
        return self.root / "etc/bootlab/config.yaml"

    @property
    def state(self) -> Path:
        return self.root / "var/lib/bootlab"

    @property
    def runtime(self) -> Path:
        return self.root / "run/bootlab"

    @property
    def socket(self) -> Path:
        return self.runtime / "bootlab.sock"

    @property
    def gpu_lock(self) -> Path:
        return self.runtime / "gpu.lock"

    @property
    def upgrade_status(self) -> Path:
        return self.state / "upgrade.json"

    @property
    def motd(self) -> Path:
        return self.root / "run/motd.d/50-bootlab-upgrade"

    @property
    def ostree_auth(self) -> Path:
        """What `bootc upgrade` reads (ostree-container reads no other file)."""
        return self.root / "etc/ostree/auth.json"

    @property
    def containers_auth(self) -> Path:
        """root's persistent podman/skopeo auth file: read by them after the runtime one in
        /run/containers/0, and unlike that one it survives a reboot (/root is /var/roothome)."""
        return self.root / "root/.config/containers/auth.json"

    @property
    def containers_runtime_auth(self) -> Path:
        """Where `podman login` as root writes; kept in step so it never shadows ours."""
        return self.root / "run/containers/0/auth.json"
