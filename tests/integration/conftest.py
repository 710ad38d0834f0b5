"""Integration tier: podman, debootstrap and the local registry, for real."""

from tests.support.hub import hub  # noqa: F401 - a fixture for this tier
from tests.support.infra import (  # noqa: F401 - fixtures for this tier
    dev_image,
    registry,
    tls_registry,
    token_registry,
)
