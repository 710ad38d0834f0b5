"""Checking registry credentials before anything is saved: the Docker registry v2 login flow
(`GET /v2/`, then Basic auth or a Bearer token from the realm the registry names)."""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import ssl
import urllib.parse
from dataclasses import dataclass

from bootlab.auth import Credentials
from bootlab.errors import BootlabError, die

_REGISTRY = re.compile(
    r"^(?P<host>[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9a-fA-F:]+\])"
    r"(:(?P<port>[0-9]{1,5}))?(?P<path>(/[a-z0-9]+([._-][a-z0-9]+)*)*)$"
)
# docker.io is a name, not a host: its API lives elsewhere (as podman and docker know).
_API_HOSTS = {"docker.io": "registry-1.docker.io", "index.docker.io": "registry-1.docker.io"}
TIMEOUT_S = 15.0


def normalize_registry(text: str) -> str:
    """`https://Quay.io/` → `quay.io`; a registry is host[:port][/namespace], nothing else."""
    name = text.strip()
    for scheme in ("https://", "http://"):
        if name.lower().startswith(scheme):
            name = name[len(scheme) :]
    name = name.rstrip("/")
    host, slash, rest = name.partition("/")
    name = host.lower() + slash + rest
    match = _REGISTRY.match(name)
    if not match or (match["port"] and not 0 < int(match["port"]) < 65536):
        raise die(
            f"'{text}' is not a registry name",
            hint="give host[:port], e.g. quay.io or registry.example.com:5000",
            exit_code=2,
        )
    return name


@dataclass(frozen=True)
class LoginResult:
    registry: str
    scheme: str  # https, or http where TLS verification is off and the registry has no TLS
    anonymous: bool  # the registry let us in without credentials: they were not checked


def check_login(registry: str, credentials: Credentials, *, tls_verify: bool) -> LoginResult:
    """Prove the credentials work; every failure is one error that says what to do.
    The password is sent only to the registry (and its token realm), never logged."""
    host_port = registry.split("/", 1)[0]
    api_host = _API_HOSTS.get(host_port, host_port)
    schemes = ["https"] if tls_verify else ["https", "http"]
    last_error: BootlabError | None = None
    for scheme in schemes:
        try:
            return _login_flow(registry, scheme, api_host, credentials, tls_verify)
        except _WrongProtocolError as error:
            last_error = die(
                f"registry {registry} does not speak {scheme}: {error}",
                hint="check the registry name and port",
            )
    assert last_error is not None
    raise last_error


class _WrongProtocolError(Exception):
    """TLS spoken to a plain-HTTP server: worth retrying over http when verification is off."""


def _login_flow(
    registry: str, scheme: str, api_host: str, credentials: Credentials, tls_verify: bool
) -> LoginResult:
    status, headers, _ = _get(
        scheme, api_host, "/v2/", authorization=None, registry=registry, verify=tls_verify
    )
    if status == 200:
        return LoginResult(registry, scheme, anonymous=True)
    if status != 401:
        raise die(
            f"{scheme}://{api_host}/v2/ answered HTTP {status}: not a container registry",
            hint="check the registry name and port",
        )
    challenge = headers.get("www-authenticate", "")
    basic = (
        "Basic "
        + base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
    )
    kind, params = _parse_challenge(challenge)
    if kind == "basic":
        status, _, _ = _get(
            scheme, api_host, "/v2/", authorization=basic, registry=registry, verify=tls_verify
        )
    elif kind == "bearer" and params.get("realm"):
        status, token = _token(params, credentials, basic, registry, tls_verify)
        if token is not None:
            # As docker login does: the registry itself must accept the token it led us to.
            status, _, _ = _get(
                scheme,
                api_host,
                "/v2/",
                authorization=f"Bearer {token}",
                registry=registry,
                verify=tls_verify,
            )
    else:
        raise die(
            f"registry {registry} asks for an authentication scheme bootlab does not know: "
            f"{challenge.split(' ', 1)[0] or '(none)'}",
            hint="log in with `podman login`, then copy the entry to /etc/ostree/auth.json",
        )
    if status in (401, 403):
        raise die(
            f"registry {registry} refused the username or password",
            hint=f"check both, then run `bootlab login {registry}` again",
            exit_code=4,
        )
    if status != 200:
        raise die(f"registry {registry} answered HTTP {status} to the login", hint="try again")
    return LoginResult(registry, scheme, anonymous=False)


def _token(
    params: dict[str, str],
    credentials: Credentials,
    basic: str,
    registry: str,
    tls_verify: bool,
) -> tuple[int, str | None]:
    """The token service's answer to the credentials, and the token when it gave one."""
    realm = urllib.parse.urlsplit(params["realm"])
    if realm.scheme not in ("https", "http") or not realm.netloc:
        raise die(f"registry {registry} names an unusable token realm: {params['realm']}")
    query = {"account": credentials.username}
    if "service" in params:
        query["service"] = params["service"]
    path = (realm.path or "/") + "?" + urllib.parse.urlencode(query)
    status, _, body = _get(
        realm.scheme, realm.netloc, path, authorization=basic, registry=registry, verify=tls_verify
    )
    if status != 200:
        return status, None
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    token = (
        document.get("token") or document.get("access_token")
        if isinstance(document, dict)
        else None
    )
    if not isinstance(token, str) or not token:
        raise die(f"the token service of {registry} answered without a token")
    return status, token


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    kind, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'([A-Za-z_]+)="([^"]*)"', rest))
    return kind.lower(), params


def _get(
    scheme: str,
    netloc: str,
    path: str,
    *,
    authorization: str | None,
    registry: str,
    verify: bool,
) -> tuple[int, dict[str, str], bytes]:
    connection: http.client.HTTPConnection
    if scheme == "https":
        context = ssl.create_default_context()
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection(netloc, timeout=TIMEOUT_S, context=context)
    else:
        connection = http.client.HTTPConnection(netloc, timeout=TIMEOUT_S)
    headers = {"User-Agent": "bootlab", "Accept": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read(1 << 20)
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    except ssl.SSLCertVerificationError as error:
        raise die(
            f"TLS verification of {netloc} failed: {error.verify_message}",
            hint="add the registry's CA to the system trust store (update-ca-trust), or for a "
            "test registry pass --tls-verify=false",
            exit_code=5,
        ) from None
    except ssl.SSLError as error:
        if error.reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL"):
            raise _WrongProtocolError(error.reason) from None
        raise die(f"TLS with {netloc} failed: {error.reason or error}", exit_code=5) from None
    except socket.gaierror:
        raise die(
            f"cannot resolve registry host '{netloc.rsplit(':', 1)[0]}'",
            hint="check the spelling, and DNS on this machine",
            exit_code=5,
        ) from None
    except TimeoutError:
        raise die(
            f"registry {registry} did not answer within {TIMEOUT_S:g}s ({netloc})",
            hint="check that it is up and reachable from this machine",
            exit_code=5,
        ) from None
    except (ConnectionError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "strerror", None) or error.__class__.__name__
        raise die(
            f"registry {registry} is not reachable at {scheme}://{netloc}: {reason}",
            hint="check the name and port, and that the registry is up",
            exit_code=5,
        ) from None
    finally:
        connection.close()
