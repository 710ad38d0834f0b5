"""Real test infrastructure, in one place: podman settings, the built dev image, and a local
registry with htpasswd auth. Tiers import the fixtures they need from here."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = REPO_ROOT / ".ci" / "containers.conf"
DEV_TAG = "localhost/bootlab-test:dev"


def podman_env() -> dict[str, str]:
    return {
        **os.environ,
        "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(CONTAINERS_CONF)),
    }


def sh(*argv: str | Path, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    done: subprocess.CompletedProcess[str] = subprocess.run(
        [str(part) for part in argv],
        check=check,
        capture_output=True,
        text=True,
        env=kwargs.pop("env", podman_env()),
        **kwargs,  # type: ignore[call-overload]
    )
    return done


def build_py(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return sh(
        sys.executable,
        REPO_ROOT / "build.py",
        *args,
        check=False,
        cwd=REPO_ROOT,
        env=env or podman_env(),
    )


def require_tools(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"missing tools {missing}: run the README's test command, which installs them")


@pytest.fixture(scope="session")
def dev_image() -> str:
    """The dev profile built through build.py (base and layers cached between runs)."""
    require_tools("podman", "debootstrap")
    result = build_py("build", "--profile", "dev", "--tag", DEV_TAG)
    assert result.returncode == 0, f"dev build failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    return DEV_TAG


@dataclass(frozen=True)
class Registry:
    host: str
    username: str
    password: str
    storage: Path | None = None  # where docker-registry keeps blobs (tests corrupt them)

    def auth_file(self, directory: Path, password: str | None = None) -> Path:
        token = base64.b64encode(f"{self.username}:{password or self.password}".encode()).decode()
        path = directory / "auth.json"
        path.write_text(json.dumps({"auths": {self.host: {"auth": token}}}))
        path.chmod(0o600)
        return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _self_signed(root: Path, name: str = "tls") -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no trust store knows: TLS without verification."""
    key, cert = root / f"{name}.key", root / f"{name}.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class _TokenService(http.server.BaseHTTPRequestHandler):
    """A token service as Quay or Docker Hub run one: Basic credentials in, an RS256 JWT
    out, signed (with openssl) by a key whose certificate the registry trusts."""

    username = password = key = cert_der = ""

    def do_GET(self) -> None:
        expected = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.cert_der]}
        claims = {
            "iss": "bootlab-test-issuer",
            "sub": self.username,
            "aud": "bootlab-test",
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": os.urandom(8).hex(),
            "access": [],
        }
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", self.key],
            input=signing_input.encode(),
            capture_output=True,
            check=True,
        ).stdout
        body = json.dumps({"token": f"{signing_input}.{_b64url(signature)}"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _token_service(root: Path, username: str, password: str) -> Iterator[tuple[str, Path]]:
    key, cert = _self_signed(root, "token")
    der = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-outform", "DER"], capture_output=True, check=True
    ).stdout
    handler = type(
        "Handler",
        (_TokenService,),
        {
            "username": username,
            "password": password,
            "key": str(key),
            "cert_der": base64.b64encode(der).decode(),
        },
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/token", cert
    finally:
        server.shutdown()


@contextmanager
def _registry(
    root: Path,
    *,
    tls: bool,
    token: bool = False,
    port: int | None = None,
    credentials: tuple[str, str] | None = None,
) -> Iterator[Registry]:
    """Debian's docker-registry on a free loopback port: htpasswd (bcrypt) auth, or token
    auth (Bearer) with a token service."""
    require_tools("docker-registry", "htpasswd", "openssl")
    username, password = credentials or (
        "bootlab",
        "s3cret-" + base64.b32encode(os.urandom(10)).decode(),
    )
    # -i: the password comes on stdin, never in argv.
    hashed = subprocess.run(
        ["htpasswd", "-niB", username], input=password, text=True, capture_output=True, check=True
    ).stdout
    (root / "htpasswd").write_text(hashed)
    port = port or _free_port()
    tls_config = ""
    if tls:
        key, cert = _self_signed(root)
        tls_config = f", tls: {{certificate: {cert}, key: {key}}}"
    with contextlib.ExitStack() as stack:
        if token:
            realm, cert = stack.enter_context(_token_service(root, username, password))
            auth = (
                f"token: {{realm: '{realm}', service: bootlab-test, "
                f"issuer: bootlab-test-issuer, rootcertbundle: {cert}}}"
            )
        else:
            auth = f"htpasswd: {{realm: bootlab-test, path: {root / 'htpasswd'}}}"
        (root / "config.yml").write_text(
            "version: 0.1\n"
            f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}\n"
            f"http: {{addr: 127.0.0.1:{port}{tls_config}}}\n"
            f"auth: {{{auth}}}\n"
        )
        yield from _serve_registry(
            root, port, tls, Registry(f"127.0.0.1:{port}", username, password, root / "data")
        )


def _serve_registry(root: Path, port: int, tls: bool, registry: Registry) -> Iterator[Registry]:
    log = (root / "registry.log").open("w")
    process = subprocess.Popen(
        ["docker-registry", "serve", str(root / "config.yml")], stdout=log, stderr=subprocess.STDOUT
    )
    scheme = "https" if tls else "http"
    unverified = ssl._create_unverified_context()  # noqa: S323 - our own test certificate
    deadline = time.monotonic() + 30
    while True:
        try:
            url = f"{scheme}://127.0.0.1:{port}/v2/"
            urllib.request.urlopen(url, timeout=1, context=unverified)  # noqa: S310 - http(s) only
        except urllib.error.HTTPError as error:
            if error.code == 401:
                break
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail(f"registry did not start: {(root / 'registry.log').read_text()[-2000:]}")
        time.sleep(0.2)
    try:
        yield registry
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A plain-HTTP registry with htpasswd auth."""
    with _registry(tmp_path_factory.mktemp("registry"), tls=False) as running:
        yield running


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry behind a token service: the Bearer flow of Quay and Docker Hub."""
    with _registry(tmp_path_factory.mktemp("token-registry"), tls=False, token=True) as running:
        yield running


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """The same over HTTPS with a self-signed certificate."""
    with _registry(tmp_path_factory.mktemp("tls-registry"), tls=True) as running:
        yield running


@dataclass(frozen=True)
class Booted:
    """A container of the image with systemd as PID 1."""

    name: str

    def exec(
        self, *argv: str, input_text: str | None = None, user: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        prefix = ["podman", "exec", "-i", *(["--user", user] if user else []), self.name]
        result = subprocess.run(
            [*prefix, *argv],
            input=input_text,
            capture_output=True,
            text=True,
            env=podman_env(),
            check=False,
            timeout=600,
        )
        if check and result.returncode != 0:
            pytest.fail(f"{argv} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def write(self, path: str, text: str) -> None:
        self.exec(
            "sh", "-c", f"mkdir -p \"$(dirname '{path}')\" && cat > '{path}'", input_text=text
        )


def boot(image: str, name: str, timeout_s: float = 120) -> Booted:
    """`podman run --systemd=always`, then wait until systemd says the boot is over."""
    sh("podman", "rm", "-f", name, check=False)
    sh(
        "podman",
        "run",
        "-d",
        "--name",
        name,
        "--systemd=always",
        "--network=host",
        # vLLM's engine talks to its worker through /dev/shm: podman's 64 MiB is too little.
        "--shm-size=1g",
        image,
        "/sbin/init",
    )
    booted = Booted(name)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = booted.exec("systemctl", "is-system-running", check=False).stdout.strip()
        if state in ("running", "degraded"):
            return booted
        time.sleep(0.5)
    logs = sh("podman", "logs", name, check=False).stdout[-3000:]
    sh("podman", "rm", "-f", name, check=False)
    pytest.fail(f"{image} did not finish booting in {timeout_s}s:\n{logs}")


@pytest.fixture(scope="session")
def booted(dev_image: str) -> Iterator[Booted]:
    """The dev image booted under systemd, shared by the system tier."""
    require_tools("podman")
    machine = boot(dev_image, f"bootlab-system-{os.getpid()}")
    try:
        yield machine
    finally:
        sh("podman", "rm", "-f", "-t", "5", machine.name, check=False)
