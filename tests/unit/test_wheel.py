"""The wheel the image installs (built as image/pipeline.py builds it) carries the
appliance and nothing of the build side, which the dev install adds from the checkout."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from image.pipeline import build_appliance_wheel

pytestmark = pytest.mark.unit


def test_the_appliance_wheel_leaves_the_build_side_out(tmp_path: Path) -> None:
    build_appliance_wheel(tmp_path)
    (wheel,) = tmp_path.glob("bootlab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = {name.split("/", 1)[0] for name in names if not name.startswith("bootlab-")}
    assert packages == {"bootlab"}
    assert "bootlab/daemon/server.py" in names
