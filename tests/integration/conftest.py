"""Integration tier: podman, debootstrap and the local registry, for real."""

from infra import dev_image, registry, tls_registry  # noqa: F401 - fixtures for this tier
