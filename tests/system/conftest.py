"""System tier: the dev image booted with systemd as PID 1 (podman --systemd=always)."""

from tests.support.hub import hub  # noqa: F401 - a fixture for this tier
from tests.support.infra import booted, dev_image, registry  # noqa: F401 - fixtures for this tier
