"""Package families: how each distribution family installs and cleans up packages.

Templates ask the family for command text; they never spell dnf or apt themselves.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from image.spec import ImageSpec


@dataclass(frozen=True)
class PackageFamily:
    name: str
    command: str  # installs the packages named after it, without asking
    cleanup: str  # removes what the package manager keeps: no caches in the image's layers

    def install(self, packages: list[str] | tuple[str, ...]) -> str:
        """One shell command that installs `packages` and leaves no package caches behind."""
        named = " ".join(shlex.quote(package) for package in packages)
        return f"{self.command} {named} && {self.cleanup}"


FAMILIES = {
    "dnf": PackageFamily(
        "dnf",
        # Weak deps off: they add hundreds of MB (docs, X11 bits) to a headless appliance.
        "dnf install -y --setopt=install_weak_deps=False",
        "dnf clean all && rm -rf /var/cache/dnf /var/lib/dnf/repos",
    ),
    "apt": PackageFamily(
        "apt",
        "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
        "--no-install-recommends",
        "apt-get clean && rm -rf /var/lib/apt/lists/*",
    ),
}


def family_of(spec: ImageSpec) -> PackageFamily:
    return FAMILIES[spec.base.family]
