"""Registry credentials from the containers auth file (appliance/bootlab/auth.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from bootlab.auth import Credentials, auth_file_candidates, credentials_for, repository_of
from bootlab.errors import BootlabError

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "0123456789abcdef" * 4


def auth(username: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}


@pytest.fixture
def auth_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Point REGISTRY_AUTH_FILE at a fresh auth.json; keep the user's own files out of reach."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "runtime"))
    path = tmp_path / "auth.json"
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(path))

    def write(auths: object, raw: str | None = None) -> Path:
        path.write_text(raw if raw is not None else json.dumps({"auths": auths}), encoding="utf-8")
        return path

    return write


# --- repository_of ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "repository"),
    [
        ("quay.io/org/name", "quay.io/org/name"),
        ("quay.io/org/name:tag", "quay.io/org/name"),
        ("quay.io/org/name:1.2.3-rc1", "quay.io/org/name"),
        (f"quay.io/org/name@{DIGEST}", "quay.io/org/name"),
        (f"quay.io/org/name:tag@{DIGEST}", "quay.io/org/name"),
        ("127.0.0.1:5000/a/b:dev", "127.0.0.1:5000/a/b"),
        ("127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b"),
        (f"localhost:5000/bootlab@{DIGEST}", "localhost:5000/bootlab"),
        (f"localhost:5000/bootlab:dev@{DIGEST}", "localhost:5000/bootlab"),
        ("[::1]:5000/a:tag", "[::1]:5000/a"),
        ("registry.example.com:443/a/b/c/image:v2", "registry.example.com:443/a/b/c/image"),
        ("localhost:5000", "localhost:5000"),  # no slash: a bare host:port stays whole
    ],
)
def test_repository_of(reference: str, repository: str) -> None:
    assert repository_of(reference) == repository


# --- credentials_for ------------------------------------------------------------------------


def test_most_specific_key_wins(auth_file) -> None:
    auth_file(
        {
            "quay.io": auth("registry", "r"),
            "quay.io/org": auth("org", "o"),
            "quay.io/org/name": auth("repo", "n"),
        }
    )
    assert credentials_for("quay.io/org/name:tag") == Credentials("repo", "n")
    assert credentials_for(f"quay.io/org/name@{DIGEST}") == Credentials("repo", "n")
    assert credentials_for("quay.io/org/other:1") == Credentials("org", "o")
    assert credentials_for("quay.io/elsewhere/x") == Credentials("registry", "r")
    # A longer name that merely starts with a key is not under it.
    assert credentials_for("quay.io/organisation/x") == Credentials("registry", "r")


def test_https_prefixed_keys(auth_file) -> None:
    auth_file(
        {
            "https://quay.io": auth("docker-style", "d"),
            "http://127.0.0.1:5000": auth("local", "l"),
        }
    )
    assert credentials_for("quay.io/org/name:tag") == Credentials("docker-style", "d")
    assert credentials_for("127.0.0.1:5000/bootlab:dev") == Credentials("local", "l")


def test_specific_prefixed_key_beats_general_plain_key(auth_file) -> None:
    auth_file({"quay.io": auth("general", "g"), "https://quay.io/org": auth("specific", "s")})
    assert credentials_for("quay.io/org/name") == Credentials("specific", "s")


def test_plain_key_beats_prefixed_key_at_the_same_depth(auth_file) -> None:
    auth_file({"https://quay.io": auth("prefixed", "p"), "quay.io": auth("plain", "q")})
    assert credentials_for("quay.io/org/name") == Credentials("plain", "q")


def test_port_is_part_of_the_registry(auth_file) -> None:
    auth_file({"127.0.0.1": auth("no-port", "x"), "127.0.0.1:5001": auth("other-port", "y")})
    assert credentials_for("127.0.0.1:5000/a/b:dev") is None
    assert credentials_for("127.0.0.1:5001/a/b:dev") == Credentials("other-port", "y")


def test_password_may_contain_colons(auth_file) -> None:
    auth_file({"quay.io": auth("robot$bootlab+ci", "pa:ss:word")})
    assert credentials_for("quay.io/x/y") == Credentials("robot$bootlab+ci", "pa:ss:word")


def test_missing_entry_is_none(auth_file) -> None:
    auth_file({"quay.io": auth("u", "p")})
    assert credentials_for("registry.bootlab-test.invalid/org/name:tag") is None


def test_missing_file_is_none(auth_file, tmp_path: Path) -> None:
    assert auth_file_candidates()[0] == tmp_path / "auth.json"
    assert not (tmp_path / "auth.json").exists()
    assert credentials_for("registry.bootlab-test.invalid/org/name:tag") is None


def test_later_candidates_are_read(auth_file, tmp_path: Path) -> None:
    """An entry missing from REGISTRY_AUTH_FILE is looked up in the next file podman reads."""
    auth_file({"quay.io": auth("first", "1")})
    config = tmp_path / "home" / ".config" / "containers" / "auth.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"auths": {"ghcr.io": auth("second", "2")}}), encoding="utf-8")
    assert config in auth_file_candidates()
    assert credentials_for("ghcr.io/org/x") == Credentials("second", "2")
    assert credentials_for("quay.io/org/x") == Credentials("first", "1")


def test_empty_auths_and_no_auths_table(auth_file) -> None:
    auth_file({})
    assert credentials_for("quay.io/x") is None
    auth_file(None, raw="{}")
    assert credentials_for("quay.io/x") is None


@pytest.mark.parametrize("raw", ["{not json", "", "\xff\xfe", '{"auths": '])
def test_corrupt_json_names_the_file(auth_file, raw: str) -> None:
    path = auth_file(None, raw=raw)
    with pytest.raises(BootlabError) as caught:
        credentials_for("quay.io/x/y")
    assert str(path) in caught.value.message
    assert caught.value.hint
    if raw:
        assert raw not in caught.value.message  # the file's content may hold secrets


@pytest.mark.parametrize("raw", ['{"auths": []}', '{"auths": "x"}', "[1, 2]", "null"])
def test_auths_not_a_table(auth_file, raw: str) -> None:
    path = auth_file(None, raw=raw)
    with pytest.raises(BootlabError) as caught:
        credentials_for("quay.io/x/y")
    assert str(path) in caught.value.message


@pytest.mark.parametrize(
    "value",
    ["abc", "YWJj!ZA=x", base64.b64encode(b"\xff\xfe:x").decode()],
    ids=["bad-padding", "bad-character", "not-utf8"],
)
def test_bad_base64_names_registry_and_file(auth_file, value: str) -> None:
    path = auth_file({"quay.io": {"auth": value}})
    with pytest.raises(BootlabError) as caught:
        credentials_for("quay.io/x/y")
    assert str(path) in caught.value.message
    assert "quay.io" in caught.value.message
    assert value not in caught.value.message  # the auth value is the password, encoded
    assert caught.value.hint == "podman login quay.io"


def test_entry_without_auth(auth_file) -> None:
    path = auth_file({"quay.io": {"identitytoken": "t"}})
    with pytest.raises(BootlabError) as caught:
        credentials_for("quay.io/x/y")
    assert str(path) in caught.value.message


@pytest.mark.parametrize("entry", ["oops", {"auth": 123}, ["auth"]], ids=["str", "int", "list"])
def test_malformed_entry_is_a_bootlab_error(auth_file, entry: object) -> None:
    auth_file({"quay.io": entry})
    with pytest.raises(BootlabError):
        credentials_for("quay.io/x/y")


def test_credential_helper_placeholder_is_skipped(auth_file) -> None:
    auth_file({"quay.io": {}})
    assert credentials_for("quay.io/x/y") is None


# --- Credentials never shows the password ---------------------------------------------------


def test_repr_hides_the_password() -> None:
    secret = "s3cr3t-Pa55"
    credentials = Credentials("robot", secret)
    for text in (
        repr(credentials),
        str(credentials),
        f"{credentials}",
        f"{credentials!r}",
        repr([credentials]),
        repr({"c": credentials}),
    ):
        assert secret not in text
        assert "robot" in text
        assert "<hidden>" in text
    assert credentials.password == secret  # still there for the push itself


def test_decoded_credentials_repr_hides_the_password(auth_file) -> None:
    auth_file({"quay.io": auth("robot", "hunter2-very-secret")})
    credentials = credentials_for("quay.io/x/y")
    assert credentials is not None
    assert "hunter2-very-secret" not in repr(credentials)
