"""Golden files: the render of every profile in image/image.yaml, byte for byte.

One folder per profile (like RamaLama's test_quadlet):

    tests/golden/<profile>/Containerfile
    tests/golden/<profile>/overlay/<path under />
    tests/golden/<profile>/bib-<type>.toml
    tests/golden/<profile>/units.txt   (what systemd sees: each unit with its drop-ins,
                                        like `systemctl cat`, and what is enabled)

After an intended change to the spec or the templates, regenerate and review the diff:

    BOOTLAB_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_golden.py
    git diff tests/golden
"""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from image.render import UNITS_DIR, enabled_units, render, render_bib_config
from image.spec import DEFAULT_SPEC, SpecFile

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]
GOLDEN = REPO_ROOT / "tests" / "golden"
SPEC_LABEL = "image/image.yaml"
BIB_TYPES = ("qcow2", "ami", "raw", "iso")
PROFILES = list(SpecFile.read(DEFAULT_SPEC).profiles)
REGENERATE = "BOOTLAB_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_golden.py"


def updating() -> bool:
    return os.environ.get("BOOTLAB_UPDATE_GOLDEN") == "1"


def assert_golden(path: Path, actual: str) -> None:
    """Compare `actual` with the golden file at `path`, or write it when regenerating."""
    if updating():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(actual.encode("utf-8"))
        return
    relative = path.relative_to(REPO_ROOT)
    if not path.is_file():
        pytest.fail(f"golden file {relative} is missing; create it with:\n  {REGENERATE}")
    expected = path.read_bytes().decode("utf-8")
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                f"{relative} (golden)",
                f"{relative} (rendered)",
            )
        )
        pytest.fail(
            f"render differs from {relative}:\n{diff}\n"
            f"if the change is intended, regenerate with:\n  {REGENERATE}\n"
            "and review `git diff tests/golden` before committing",
            pytrace=False,
        )


def _rendered(profile: str):
    spec = SpecFile.read(DEFAULT_SPEC).resolve(profile)
    return spec, render(spec, SPEC_LABEL)


@pytest.mark.parametrize("profile", PROFILES)
def test_containerfile(profile: str) -> None:
    _, rendered = _rendered(profile)
    assert_golden(GOLDEN / profile / "Containerfile", rendered.containerfile)


@pytest.mark.parametrize("profile", PROFILES)
def test_overlay_files(profile: str) -> None:
    _, rendered = _rendered(profile)
    overlay_dir = GOLDEN / profile / "overlay"
    if updating():
        shutil.rmtree(overlay_dir, ignore_errors=True)  # drop files the render no longer makes
    for relative, text in rendered.overlay.items():
        assert not relative.startswith("/"), f"overlay path {relative} must be relative to /"
        assert_golden(overlay_dir / relative, text)
    golden = (
        {str(path.relative_to(overlay_dir)) for path in overlay_dir.rglob("*") if path.is_file()}
        if overlay_dir.is_dir()
        else set()
    )
    stale = sorted(golden - set(rendered.overlay))
    missing = sorted(set(rendered.overlay) - golden)
    assert not stale and not missing, (
        f"overlay of profile {profile}: golden files no longer rendered: {stale}; "
        f"rendered files without golden: {missing}; regenerate with:\n  {REGENERATE}"
    )


@pytest.mark.parametrize("disk_type", BIB_TYPES)
@pytest.mark.parametrize("profile", PROFILES)
def test_bib_config(profile: str, disk_type: str) -> None:
    spec, _ = _rendered(profile)
    assert_golden(GOLDEN / profile / f"bib-{disk_type}.toml", render_bib_config(spec, disk_type))


def units_view(profile: str) -> str:
    """Every shipped unit as the image's systemd reads it: the file, then its drop-ins from
    the spec's overlay; then sysusers/tmpfiles; then the units enabled at boot."""
    spec, rendered = _rendered(profile)
    parts = []
    for unit in sorted(path for path in UNITS_DIR.rglob("*") if path.is_file()):
        relative = unit.relative_to(UNITS_DIR)
        target = (
            f"/usr/lib/{relative}"
            if len(relative.parts) > 1
            else f"/usr/lib/systemd/system/{relative}"
        )
        parts.append(f"# {target}\n{unit.read_text(encoding='utf-8')}")
        prefix = f"usr/lib/systemd/system/{relative}.d/"
        for path, text in sorted(rendered.overlay.items()):
            if path.startswith(prefix):
                parts.append(f"# /{path}\n{text}")
    parts.append("# enabled at boot\n" + "".join(f"{u}\n" for u in enabled_units(spec)))
    return "\n".join(parts)


@pytest.mark.parametrize("profile", PROFILES)
def test_units(profile: str) -> None:
    assert_golden(GOLDEN / profile / "units.txt", units_view(profile))


def test_no_stale_golden_files() -> None:
    """Every folder is a profile and holds only what the tests above compare."""
    if updating():
        for folder in GOLDEN.iterdir():
            if folder.is_dir() and folder.name not in PROFILES:
                shutil.rmtree(folder)
    folders = {path.name for path in GOLDEN.iterdir() if path.is_dir()}
    assert folders == set(PROFILES), f"golden folders without a profile: {folders - set(PROFILES)}"
    expected_top = {"Containerfile", "overlay", "units.txt"} | {
        f"bib-{kind}.toml" for kind in BIB_TYPES
    }
    for profile in PROFILES:
        present = {path.name for path in (GOLDEN / profile).iterdir()}
        assert present <= expected_top, f"unexpected golden files: {present - expected_top}"


# --- determinism ------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_render_is_deterministic(profile: str) -> None:
    spec_file = SpecFile.read(DEFAULT_SPEC)
    first, second = spec_file.resolve(profile), SpecFile.read(DEFAULT_SPEC).resolve(profile)
    assert first == second
    a, b = render(first, SPEC_LABEL), render(second, SPEC_LABEL)
    assert a.containerfile.encode() == b.containerfile.encode()
    assert list(a.overlay.items()) == list(b.overlay.items())  # same files, same order
    for disk_type in BIB_TYPES:
        assert render_bib_config(first, disk_type) == render_bib_config(second, disk_type)


_DUMP = """
import hashlib, sys
from image.render import UNITS_DIR, enabled_units, render, render_bib_config
from image.spec import SpecFile
spec_file = SpecFile.read()
digest = hashlib.sha256()
for name in spec_file.profiles:
    spec = spec_file.resolve(name)
    rendered = render(spec, "image/image.yaml")
    digest.update(rendered.containerfile.encode())
    for path, text in rendered.overlay.items():
        digest.update(path.encode() + b"\\0" + text.encode())
    for kind in ("qcow2", "ami", "raw", "iso"):
        digest.update(render_bib_config(spec, kind).encode())
print(digest.hexdigest())
"""


def test_render_is_deterministic_across_processes() -> None:
    """No set or dict ordering leaks into the output: other hash seeds give the same bytes."""
    digests = set()
    for seed in ("1", "2", "12345"):
        env = {
            **os.environ,
            "PYTHONHASHSEED": seed,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "appliance")]),
        }
        result = subprocess.run(
            [sys.executable, "-c", _DUMP],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        digests.add(result.stdout.strip())
    assert len(digests) == 1


def test_committed_containerfile_is_the_default_profile_render() -> None:
    spec_file = SpecFile.read(DEFAULT_SPEC)
    rendered = render(spec_file.resolve(), SPEC_LABEL).containerfile
    committed = (REPO_ROOT / "Containerfile").read_text(encoding="utf-8")
    assert committed == rendered, (
        "Containerfile differs from the default profile's render; "
        "run `python build.py render --write`"
    )
    # ...and the default profile's golden file is that same text.
    if not updating():
        default = spec_file.default_profile
        golden = (GOLDEN / default / "Containerfile").read_text(encoding="utf-8")
        assert golden == committed
