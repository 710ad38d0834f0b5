"""Package families: how each distribution family installs and cleans up packages.

Templates ask the family for command text; they never spell dnf or apt themselves.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Protocol

from image.spec import ImageSpec


class PackageFamily(Protocol):
    @property
    def name(self) -> str: ...

    def install(self, packages: list[str] | tuple[str, ...]) -> str:
        """One shell command that installs `packages` and leaves no package caches behind."""
        ...


@dataclass(frozen=True)
class Dnf:
    name: str = "dnf"

    def install(self, packages: list[str] | tuple[str, ...]) -> str:
        # Weak deps off: they add hundreds of MB (docs, X11 bits) to a headless appliance.
        return (
            "dnf install -y --setopt=install_weak_deps=False "
            + " ".join(shlex.quote(package) for package in packages)
            + " && dnf clean all && rm -rf /var/cache/dnf /var/lib/dnf/repos"
        )


@dataclass(frozen=True)
class Apt:
    name: str = "apt"

    def install(self, packages: list[str] | tuple[str, ...]) -> str:
        return (
            "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
            "--no-install-recommends "
            + " ".join(shlex.quote(package) for package in packages)
            + " && apt-get clean && rm -rf /var/lib/apt/lists/*"
        )


def family_of(spec: ImageSpec) -> PackageFamily:
    return Dnf() if spec.base.family == "dnf" else Apt()
