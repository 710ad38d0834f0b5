"""The one client of the Docker registry v2 API: the scheme (https, or http where
verification is off), the login flow (`GET /v2/`, then Basic auth or a Bearer token from the
realm the registry names), redirects, and one error per failure. `check_login` proves
credentials before they are saved; pulls and pushes open a `Session` on one repository."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import re
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

from bootlab.auth import Credentials
from bootlab.errors import BootlabError, Exit, die

_REGISTRY = re.compile(
    r"^(?P<host>[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9a-fA-F:]+\])"
    r"(:(?P<port>[0-9]{1,5}))?(?P<path>(/[a-z0-9]+([._-][a-z0-9]+)*)*)$"
)
# docker.io is a name, not a host: its API lives elsewhere (as podman and docker know).
_API_HOSTS = {"docker.io": "registry-1.docker.io", "index.docker.io": "registry-1.docker.io"}
TIMEOUT_S = 15.0  # a login: the admin waits for it


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
            exit_code=Exit.USAGE,
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
    return Session(registry, None, credentials, tls_verify=tls_verify, timeout=TIMEOUT_S).login()


class _WrongProtocolError(Exception):
    """TLS spoken to a plain-HTTP server: worth retrying over http when verification is off."""


@contextlib.contextmanager
def network_errors(scheme: str, netloc: str, registry: str, timeout: float) -> Iterator[None]:
    """Socket and TLS failures as one error each that says what to check."""
    try:
        yield
    except ssl.SSLCertVerificationError as error:
        raise die(
            f"TLS verification of {netloc} failed: {error.verify_message}",
            hint="add the registry's CA to the system trust store (update-ca-trust), or for a "
            "test registry pass --tls-verify=false",
            exit_code=Exit.UNREACHABLE,
        ) from None
    except ssl.SSLError as error:
        if error.reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL"):
            raise _WrongProtocolError(error.reason) from None
        raise die(
            f"TLS with {netloc} failed: {error.reason or error}", exit_code=Exit.UNREACHABLE
        ) from None
    except socket.gaierror:
        raise die(
            f"cannot resolve registry host '{netloc.rsplit(':', 1)[0]}'",
            hint="check the spelling, and DNS on this machine",
            exit_code=Exit.UNREACHABLE,
        ) from None
    except TimeoutError:
        raise die(
            f"registry {registry} did not answer within {timeout:g}s ({netloc})",
            hint="check that it is up and reachable from this machine",
            exit_code=Exit.UNREACHABLE,
        ) from None
    except (ConnectionError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "strerror", None) or error.__class__.__name__
        raise die(
            f"registry {registry} is not reachable at {scheme}://{netloc}: {reason}",
            hint="check the name and port, and that the registry is up",
            exit_code=Exit.UNREACHABLE,
        ) from None


class Response:
    """An open answer: read it (or stream it with readinto), then close it."""

    def __init__(self, connection: http.client.HTTPConnection, answer: http.client.HTTPResponse):
        self._connection = connection
        self.answer = answer
        self.status = answer.status
        self.headers = {key.lower(): value for key, value in answer.getheaders()}

    def read(self, limit: int = 16 << 20) -> bytes:
        return self.answer.read(limit)

    def close(self) -> None:
        self._connection.close()


class Session:
    """One registry (and one repository of it, for pulls and pushes), shared by download
    workers: the scheme is found once (https, or http where verification is off and the
    registry has none), the credentials are exchanged for a token once, and redirects are
    followed. Without a repository it can only `login`."""

    def __init__(
        self,
        registry: str,
        repository: str | None,
        credentials: Credentials | None,
        *,
        tls_verify: bool,
        push: bool = False,
        timeout: float = 30.0,
    ) -> None:
        host_port = registry.split("/", 1)[0]
        self.registry = registry
        self.repository = repository or ""
        self.api_host = _API_HOSTS.get(host_port, host_port)
        self.credentials = credentials
        self.tls_verify = tls_verify
        # A login asks the token service for no scope of its own: /v2/ is all it opens.
        self.scope = (
            f"repository:{repository}:pull" + (",push" if push else "") if repository else None
        )
        self.timeout = timeout
        self.scheme = "https"
        self._probe: tuple[int, str] | None = None  # the unauthenticated /v2/: status, challenge
        self._authorization: str | None = None
        self._lock = threading.Lock()

    def login(self) -> LoginResult:
        """The registry's own word that the credentials open it, as `docker login` asks."""
        status, challenge = self._settle_scheme()
        if status == 200:
            return LoginResult(self.registry, self.scheme, anonymous=True)
        if status != 401:
            raise die(
                f"{self.scheme}://{self.api_host}/v2/ answered HTTP {status}: "
                "not a container registry",
                hint="check the registry name and port",
            )
        status, authorization = self._authorization_for(challenge)
        if authorization is not None:
            # As docker login does: the registry itself must accept what it led us to.
            with self._lock:
                self._authorization = authorization
            response = self._send("GET", self.scheme, self.api_host, "/v2/", auth=True)
            response.close()
            status = response.status
        if status in (401, 403):
            raise die(
                f"registry {self.registry} refused the username or password",
                hint=f"check both, then run `bootlab login {self.registry}` again",
                exit_code=Exit.CREDENTIALS,
            )
        if status != 200:
            raise die(
                f"registry {self.registry} answered HTTP {status} to the login", hint="try again"
            )
        return LoginResult(self.registry, self.scheme, anonymous=False)

    def open(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        expect: tuple[int, ...] = (200,),
    ) -> Response:
        """Send one request, authenticating and following redirects; a status outside
        `expect` is an error that names the repository."""
        self._settle_scheme()
        response = self._send(
            method, self.scheme, self.api_host, path, headers=headers, body=body, auth=True
        )
        if response.status == 401:
            challenge = response.headers.get("www-authenticate", "")
            response.close()
            status, authorization = self._authorization_for(challenge)
            if authorization is None:
                raise self._status_error(status, "token", "")
            with self._lock:
                self._authorization = authorization
            response = self._send(
                method, self.scheme, self.api_host, path, headers=headers, body=body, auth=True
            )
        for _ in range(5):
            if response.status not in (301, 302, 303, 307, 308):
                break
            location = urllib.parse.urlsplit(response.headers.get("location", ""))
            response.close()
            same = not location.netloc or location.netloc == self.api_host
            target = location.path + (f"?{location.query}" if location.query else "")
            response = self._send(
                method if response.status in (307, 308) else "GET",
                location.scheme or self.scheme,
                location.netloc or self.api_host,
                target,
                headers=headers,
                body=body,
                auth=same,
            )
        if response.status in expect:
            return response
        status = response.status
        detail = response.read(4096).decode(errors="replace").strip()
        response.close()
        raise self._status_error(status, path, detail)

    def _status_error(self, status: int, path: str, detail: str) -> BootlabError:
        where = f"{self.registry}/{self.repository}"
        if status in (401, 403):
            return die(
                f"{where}: access denied (HTTP {status})",
                hint=f"log in first: bootlab login {self.registry}",
                exit_code=Exit.CREDENTIALS,
            )
        if status == 404:
            return die(
                f"{where}: not found ({path.rsplit('/', 1)[-1]})",
                hint="check the repository name and tag",
                exit_code=Exit.NOT_FOUND,
            )
        return die(f"{where}: HTTP {status} for {path}: {detail[:200]}", exit_code=Exit.UNREACHABLE)

    def _settle_scheme(self) -> tuple[int, str]:
        """The first, unauthenticated `GET /v2/`: over https, or over http where verification
        is off and the server speaks no TLS. Its status and challenge, asked once."""
        with self._lock:
            if self._probe is not None:
                return self._probe
            schemes = ["https"] if self.tls_verify else ["https", "http"]
            reason = ""
            for scheme in schemes:
                try:
                    response = self._send(
                        "GET", scheme, self.api_host, "/v2/", auth=False, probe=True
                    )
                except _WrongProtocolError as error:
                    reason = str(error)
                    continue
                response.close()
                self.scheme = scheme
                self._probe = (response.status, response.headers.get("www-authenticate", ""))
                return self._probe
            raise die(
                f"registry {self.registry} does not speak {schemes[-1]}: {reason}",
                hint="check the registry name and port",
                exit_code=Exit.UNREACHABLE,
            )

    def _authorization_for(self, challenge: str) -> tuple[int, str | None]:
        """The Authorization header that answers the challenge, or None with the token
        service's status where it refused."""
        kind, params = _parse_challenge(challenge)
        basic = None
        if self.credentials is not None:
            pair = f"{self.credentials.username}:{self.credentials.password}".encode()
            basic = "Basic " + base64.b64encode(pair).decode()
        if kind == "basic":
            if basic is None:
                raise die(
                    f"{self.registry} needs a login",
                    hint=f"bootlab login {self.registry}",
                    exit_code=Exit.CREDENTIALS,
                )
            return 200, basic
        if kind == "bearer" and params.get("realm"):
            if self.scope is not None:
                params = {**params, "scope": self.scope}
            status, token = self._token(params, basic)
            return status, None if token is None else f"Bearer {token}"
        raise die(
            f"registry {self.registry} asks for an authentication scheme bootlab does not know: "
            f"{challenge.split(' ', 1)[0] or '(none)'}",
            hint="log in with `podman login`, then copy the entry to /etc/ostree/auth.json",
        )

    def _token(self, params: dict[str, str], basic: str | None) -> tuple[int, str | None]:
        """The token service's answer to the credentials, and the token when it gave one."""
        realm = urllib.parse.urlsplit(params["realm"])
        if realm.scheme not in ("https", "http") or not realm.netloc:
            raise die(f"registry {self.registry} names an unusable token realm: {params['realm']}")
        query = {"account": self.credentials.username} if self.credentials else {}
        for key in ("service", "scope"):
            if key in params:
                query[key] = params[key]
        path = (realm.path or "/") + "?" + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json", **({"Authorization": basic} if basic else {})}
        response = self._send("GET", realm.scheme, realm.netloc, path, headers=headers, auth=False)
        try:
            body = response.read(1 << 20)
        finally:
            response.close()
        if response.status != 200:
            return response.status, None
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
            raise die(f"the token service of {self.registry} answered without a token")
        return response.status, token

    def _send(
        self,
        method: str,
        scheme: str,
        netloc: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        auth: bool,
        probe: bool = False,
    ) -> Response:
        """One request on a connection of its own; with `probe`, TLS spoken to a plain-HTTP
        server is `_WrongProtocolError`, for the caller to try http."""
        connection = _connect(scheme, netloc, self.tls_verify, self.timeout)
        sent = {"User-Agent": "bootlab", **(headers or {})}
        if auth and self._authorization:
            sent["Authorization"] = self._authorization
        try:
            with network_errors(scheme, netloc, self.registry, self.timeout):
                try:
                    connection.request(method, path, body=body, headers=sent)
                    return Response(connection, connection.getresponse())
                except BaseException:
                    connection.close()
                    raise
        except _WrongProtocolError as error:
            if probe:
                raise
            raise die(
                f"{netloc} does not speak {scheme}: {error}",
                hint="check the registry's token realm and redirects",
                exit_code=Exit.UNREACHABLE,
            ) from None


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    kind, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'([A-Za-z_]+)="([^"]*)"', rest))
    return kind.lower(), params


def _connect(scheme: str, netloc: str, verify: bool, timeout: float) -> http.client.HTTPConnection:
    if scheme == "https":
        context = ssl.create_default_context()
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(netloc, timeout=timeout, context=context)
    return http.client.HTTPConnection(netloc, timeout=timeout)
