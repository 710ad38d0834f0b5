"""Shared test setup: import paths for a plain checkout, and helpers every tier may use."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# The build side (`image/`) runs from the checkout and the appliance (`bootlab`) may not be
# installed into the interpreter running the tests: make both importable either way.
for entry in (REPO_ROOT / "appliance", REPO_ROOT):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))


TIERS = frozenset({"unit", "integration", "system", "ml", "vm"})


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects what it does not match
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test belongs to a tier: CI selects by tier, so one without would never run."""
    untiered = [item.nodeid for item in items if not TIERS & {m.name for m in item.iter_markers()}]
    if untiered:
        raise pytest.UsageError(
            "tests without a tier marker (add pytestmark = pytest.mark.unit, or integration, vm, "
            "system, ml): " + ", ".join(untiered)
        )


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[[str], Path]:
    """Write a spec file (dedented YAML) into tmp_path and return its path."""

    def write(text: str, name: str = "image.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write
