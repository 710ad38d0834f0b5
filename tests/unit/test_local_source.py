"""Local model paths that bootlabd cannot see say why: systemd gives the daemon a /tmp of
its own, so a model the admin left in /tmp is not there for it."""

from __future__ import annotations

from pathlib import Path

import pytest
from bootlab.errors import BootlabError
from bootlab.paths import Paths
from bootlab.store.fetch import Progress
from bootlab.store.layout import model_store
from bootlab.store.sources import local

pytestmark = pytest.mark.unit


def refusal(reference: str, tmp_path: Path) -> BootlabError:
    with pytest.raises(BootlabError) as refused:
        local.pull(reference, "m", model_store(Paths(tmp_path)), progress=Progress())
    return refused.value


@pytest.mark.parametrize("missing", ["/tmp/bootlab-test-no-such-model", "/var/tmp/no/such"])
def test_a_missing_tmp_path_under_systemd_names_private_tmp(
    missing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INVOCATION_ID", "0123456789abcdef0123456789abcdef")
    error = refusal(missing, tmp_path)
    assert error.exit_code == 2
    assert f"cannot see {missing}" in error.message and "PrivateTmp=" in error.message
    assert "move the model out of /tmp" in (error.hint or "")


def test_outside_systemd_or_tmp_a_missing_path_is_just_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    assert "neither a model reference" in refusal("/tmp/bootlab-no-such", tmp_path).message
    monkeypatch.setenv("INVOCATION_ID", "0123456789abcdef0123456789abcdef")
    assert "neither a model reference" in refusal("/srv/no/such/model", tmp_path).message
