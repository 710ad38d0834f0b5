"""Local models as bootlabd imports them: a directory of its own (an upload the CLI sent, a
training job's output), moved into the store where it can be, links read as their files,
and nothing that leads out of the directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from bootlab.errors import BootlabError
from bootlab.paths import Paths
from bootlab.store.fetch import Progress
from bootlab.store.layout import model_store
from bootlab.store.sources import local

pytestmark = pytest.mark.unit


def test_a_missing_path_is_refused_as_usage(tmp_path: Path) -> None:
    with pytest.raises(BootlabError) as refused:
        local.pull("/srv/no/such/model", "m", model_store(Paths(tmp_path)), progress=Progress())
    assert refused.value.exit_code == 2 and "nor a path that exists" in refused.value.message


def test_moved_into_the_store_links_as_their_files_and_named_by_origin(tmp_path: Path) -> None:
    model = tmp_path / "staged" / "content"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "weights.bin").write_bytes(os.urandom(4096))
    (model / "alias.bin").symlink_to("weights.bin")  # sorts before its target
    store = model_store(Paths(tmp_path / "root"))
    record = local.pull(
        str(model), "m", store, progress=Progress(), move=True, origin="/home/a/model"
    )
    assert record.source == "file:///home/a/model"
    assert record.files["alias.bin"] == record.files["weights.bin"]
    # Moved (same filesystem): the staging copy is gone, no blob is a link.
    assert not (model / "weights.bin").exists()
    assert all(not blob.is_symlink() for blob in store.blobs.iterdir())
    assert store.verify("m") == []


def test_a_link_out_of_the_directory_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (tmp_path / "secret").write_text("x")
    (model / "weights.bin").symlink_to(tmp_path / "secret")
    with pytest.raises(BootlabError) as refused:
        local.pull(str(model), "m", model_store(Paths(tmp_path / "r")), progress=Progress())
    assert refused.value.exit_code == 7 and "links outside" in refused.value.message
