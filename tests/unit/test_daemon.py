"""bootlabd for real on a Unix socket (in a temporary root): routes, errors, OpenAPI, fuzz."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bootlab import client
from bootlab.errors import BootlabError, Exit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.appliance_daemon import Daemon, running_daemon

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    with running_daemon() as running:
        yield running


def raw_request(path: Path, request: bytes) -> tuple[int, dict[str, Any]]:
    with socket.socket(socket.AF_UNIX) as connection:
        connection.connect(str(path))
        connection.sendall(request)
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                None,
            )
            if length is not None and len(body) >= length:
                break
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.partition(b"\r\n\r\n")[2])


def test_openapi_lists_every_route(daemon: Daemon) -> None:
    document = client.call(daemon.socket, "GET", "/openapi.json")
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) >= {
        "/v1/status",
        "/v1/system/info",
        "/v1/auth",
        "/v1/auth/login",
        "/v1/auth/logout",
        "/v1/config",
        "/v1/config/init",
        "/v1/services/{workload}",
        "/v1/services/{workload}/start",
        "/v1/services/{workload}/stop",
    }
    login = document["components"]["schemas"]["LoginRequest"]
    assert login["properties"]["password"]["writeOnly"] is True


def test_system_info_is_cpu_only_here(daemon: Daemon) -> None:
    info = client.call(daemon.socket, "GET", "/v1/system/info")
    assert info["cpu_count"] >= 1 and info["memory_total_mib"] > 0
    assert info["profile"]["name"] == "CPU only" and info["gpus"] == []


def test_config_init_then_show(daemon: Daemon) -> None:
    answer = client.call(daemon.socket, "POST", "/v1/config/init", {"force": False})
    assert answer["path"] == str(daemon.root / "etc/bootlab/config.yaml")
    view = client.call(daemon.socket, "GET", "/v1/config")
    assert view["config"]["serve"]["gpus"] == "auto"
    with pytest.raises(BootlabError) as refused:
        client.call(daemon.socket, "POST", "/v1/config/init", {"force": False})
    assert refused.value.exit_code == 3 and "already exists" in refused.value.message
    forced = client.call(daemon.socket, "POST", "/v1/config/init", {"force": True})
    assert forced["backup"] and Path(forced["backup"]).read_text().startswith("# bootlab")


@pytest.mark.parametrize(
    ("request_bytes", "status", "fragment"),
    [
        (b"GET /v2/nothing HTTP/1.1\r\nHost: x\r\n\r\n", 404, "no such API path"),
        (b"DELETE /v1/status HTTP/1.1\r\nHost: x\r\n\r\n", 405, "not allowed"),
        (b"GET /v1/services/dance HTTP/1.1\r\nHost: x\r\n\r\n", 404, "no workload 'dance'"),
        (b"POST /v1/auth/login HTTP/1.1\r\nContent-Length: 5\r\n\r\n{nope", 400, "not valid JSON"),
        (b"POST /v1/auth/login HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413, "at most"),
        (b"POST /v1/auth/login HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400, "not a number"),
        (b"POST /v1/auth/logout HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 422, "registry"),
        (
            b'POST /v1/config/init HTTP/1.1\r\nContent-Length: 14\r\n\r\n{"force": "x"}',
            422,
            "force",
        ),
    ],
)
def test_bad_requests_get_clear_errors(
    daemon: Daemon, request_bytes: bytes, status: int, fragment: str
) -> None:
    answer_status, body = raw_request(daemon.socket, request_bytes)
    assert answer_status == status
    assert fragment in body["error"]
    assert "Traceback" not in json.dumps(body)


def test_validation_errors_never_echo_the_password(daemon: Daemon) -> None:
    secret = "hunter2-very-secret"
    body = json.dumps({"registry": "x", "username": "", "password": secret, "extra": 1}).encode()
    request = b"POST /v1/auth/login HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    status, answer = raw_request(daemon.socket, request)
    assert status == 422 and secret not in json.dumps(answer)
    assert secret not in (daemon.root / "daemon.log").read_text()


def test_unknown_socket_and_permission_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(BootlabError) as missing:
        client.call(tmp_path / "none.sock", "GET", "/v1/status")
    assert missing.value.exit_code == Exit.UNAVAILABLE
    assert "not running" in missing.value.message


def from_schema(  # noqa: PLR0911 - one return per schema kind reads best
    schema: dict[str, Any], schemas: dict[str, Any]
) -> st.SearchStrategy[Any]:
    """Values valid for the (small) subset of JSON schema that pydantic writes for request
    bodies: objects of strings, booleans, integers, nulls and unions of them."""
    if "$ref" in schema:
        return from_schema(schemas[schema["$ref"].rsplit("/", 1)[1]], schemas)
    if "anyOf" in schema:
        return st.one_of([from_schema(option, schemas) for option in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: from_schema(v, schemas) for k, v in properties.items() if k in required},
            optional={
                k: from_schema(v, schemas) for k, v in properties.items() if k not in required
            },
        )
    if kind == "string":
        return st.text(
            min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 40), 40)
        )
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers()
    if kind == "null":
        return st.none()
    raise AssertionError(f"the fuzzer does not know {schema}")


def _request_schemas() -> list[tuple[str, str, dict[str, Any]]]:
    with running_daemon() as running:
        document = client.call(running.socket, "GET", "/openapi.json")
    schemas = document["components"]["schemas"]
    operations = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            reference = (
                operation.get("requestBody", {})
                .get("content", {})
                .get("application/json", {})
                .get("schema", {})
                .get("$ref")
            )
            body = {"type": "null"} if reference is None else {"$ref": reference}
            operations.append((method.upper(), path, {"body": body, "schemas": schemas}))
    return operations


OPERATIONS = _request_schemas()


@pytest.mark.parametrize(
    ("method", "path", "schema"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS]
)
def test_fuzz_no_500_and_no_traceback(
    daemon: Daemon, method: str, path: str, schema: dict[str, Any]
) -> None:
    """Bodies from the schema (valid ones) and anything JSON (mostly invalid): the daemon
    answers every one with a status below 500 and a readable error."""
    workloads = st.sampled_from(["serve", "train", "nope"])
    bodies = st.one_of(
        from_schema(schema["body"], schema["schemas"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=3)
                | st.dictionaries(st.text(max_size=8), children, max_size=3)
            ),
            max_leaves=8,
        ),
    )

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=bodies, workload=workloads)
    def check(body: Any, workload: str) -> None:
        payload = json.dumps(body).encode()
        target = path.replace("{workload}", workload)
        request = b"%s %s HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (
            method.encode(),
            target.encode(),
            len(payload),
            payload,
        )
        status, answer = raw_request(daemon.socket, request)
        assert status < 500 or "internal" not in answer.get("error", ""), answer
        assert status != 500, answer
        assert "Traceback" not in json.dumps(answer)

    check()
