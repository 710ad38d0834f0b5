"""Files and directories made whole or not at all (`bootlab.files`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bootlab import files

pytestmark = pytest.mark.unit


def test_a_cache_entry_replaces_the_old_one_only_when_whole(tmp_path: Path) -> None:
    entry = tmp_path / "cache" / "wheels-1.2"  # a dot in the name is no suffix to replace
    with files.cache_entry(entry, marker=".complete") as partial:
        partial.mkdir()
        (partial / "a.whl").write_text("old")
    assert sorted(p.name for p in entry.iterdir()) == [".complete", "a.whl"]

    with pytest.raises(OSError, match="disk full"), files.cache_entry(entry) as partial:
        partial.mkdir()
        (partial / "b.whl").write_text("half")
        raise OSError("disk full")
    assert sorted(p.name for p in entry.iterdir()) == [".complete", "a.whl"]

    with files.cache_entry(entry, marker=".complete", sync=True) as partial:
        partial.mkdir()
        (partial / "b.whl").write_text("new")
    assert sorted(p.name for p in entry.iterdir()) == [".complete", "b.whl"]
    assert sorted(p.name for p in entry.parent.iterdir()) == ["wheels-1.2"]  # nothing aside


def test_a_cache_entry_may_be_a_file(tmp_path: Path) -> None:
    tarball = tmp_path / "base" / "key.tar"
    (tarball.parent).mkdir()
    (tarball.parent / ".key.tar.partial").write_text("a killed run's")
    with files.cache_entry(tarball) as partial:
        assert not partial.exists()  # the stale partial is gone before the block starts
        partial.write_text("rootfs")
    assert tarball.read_text() == "rootfs"
    assert sorted(p.name for p in tarball.parent.iterdir()) == ["key.tar"]
