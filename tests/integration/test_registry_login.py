"""Checking credentials against a real registry (docker-registry, htpasswd auth), over HTTP
and over HTTPS with a certificate nobody trusts."""

from __future__ import annotations

import pytest
from bootlab.auth import Credentials
from bootlab.errors import BootlabError
from bootlab.registry import check_login, normalize_registry

from tests.support.infra import Registry

pytestmark = pytest.mark.integration


def credentials(registry: Registry, password: str | None = None) -> Credentials:
    return Credentials(registry.username, password or registry.password)


def test_right_password_is_accepted(registry: Registry) -> None:
    result = check_login(registry.host, credentials(registry), tls_verify=False)
    assert (result.scheme, result.anonymous) == ("http", False)


def test_wrong_password_is_refused_without_echoing_it(registry: Registry) -> None:
    with pytest.raises(BootlabError) as refused:
        check_login(registry.host, credentials(registry, "wrong-pass-123"), tls_verify=False)
    assert refused.value.exit_code == 4
    assert "refused the username or password" in refused.value.message
    assert "wrong-pass-123" not in refused.value.render()


def test_plain_http_registry_needs_tls_verify_off(registry: Registry) -> None:
    with pytest.raises(BootlabError) as refused:
        check_login(registry.host, credentials(registry), tls_verify=True)
    assert refused.value.exit_code == 5 or "does not speak https" in refused.value.message


def test_untrusted_certificate_is_a_clear_tls_error(tls_registry: Registry) -> None:
    with pytest.raises(BootlabError) as refused:
        check_login(tls_registry.host, credentials(tls_registry), tls_verify=True)
    assert refused.value.exit_code == 5
    assert "TLS verification" in refused.value.message
    assert "--tls-verify=false" in (refused.value.hint or "")


def test_tls_without_verification_logs_in_over_https(tls_registry: Registry) -> None:
    result = check_login(tls_registry.host, credentials(tls_registry), tls_verify=False)
    assert result.scheme == "https"
    with pytest.raises(BootlabError):
        check_login(tls_registry.host, credentials(tls_registry, "nope"), tls_verify=False)


def test_registry_down_and_unknown_host(registry: Registry) -> None:
    with pytest.raises(BootlabError) as down:
        check_login("127.0.0.1:9", credentials(registry), tls_verify=False)
    assert down.value.exit_code == 5 and "not reachable" in down.value.message
    with pytest.raises(BootlabError) as unknown:
        check_login("no-such-host.invalid", credentials(registry), tls_verify=True)
    assert unknown.value.exit_code == 5 and "cannot resolve" in unknown.value.message


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("https://Quay.io/", "quay.io"),
        ("registry.example.com:5000/team", "registry.example.com:5000/team"),
        ("[::1]:5000", "[::1]:5000"),
    ],
)
def test_registry_names_are_normalized(text: str, name: str) -> None:
    assert normalize_registry(text) == name


@pytest.mark.parametrize("text", ["", "a b", "host:99999", "-bad.example", "quay.io/UPPER"])
def test_bad_registry_names_are_refused(text: str) -> None:
    with pytest.raises(BootlabError) as refused:
        normalize_registry(text)
    assert refused.value.exit_code == 2 and "not a registry name" in refused.value.message


def test_bearer_token_flow_against_a_token_auth_registry(token_registry: Registry) -> None:
    """The registry sends us to its token service; the token must then open the registry."""
    result = check_login(token_registry.host, credentials(token_registry), tls_verify=False)
    assert (result.scheme, result.anonymous) == ("http", False)
    with pytest.raises(BootlabError) as refused:
        check_login(token_registry.host, credentials(token_registry, "bad"), tls_verify=False)
    assert refused.value.exit_code == 4
