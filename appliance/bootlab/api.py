"""The API's schema: request and response bodies shared by the daemon and the CLI.

Requests reject unknown fields, so a typo in a client is an error, not a silent default."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from bootlab.config import Config
from bootlab.services import Workload
from bootlab.sysinfo import SystemInfo

API_VERSION = "v1"


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ErrorBody(_Body):
    error: str
    hint: str | None = None
    code: int = Field(1, description="The exit code the CLI returns for this error.")


class ServiceState(_Body):
    workload: Workload
    unit: str
    active: str = Field(description="systemd ActiveState: active, inactive, failed, ...")
    sub: str
    main_pid: int
    result: str
    since: float | None = Field(description="Seconds since the epoch of the last change.")


class UpgradeStatus(_Body):
    checked_at: float
    available: bool | None = Field(description="None when the check itself failed.")
    message: str


class Status(_Body):
    version: str
    hostname: str
    profile: str
    services: list[ServiceState]
    gpu_holder: str | None = Field(description="Who holds the GPU lock, e.g. 'serve (pid 42)'.")
    registries: list[str]
    upgrade: UpgradeStatus | None
    config_error: str | None
    warnings: list[str] = []


class LoginRequest(_Body):
    registry: str = Field(min_length=1, max_length=255)
    username: str = Field(min_length=1, max_length=255)
    password: SecretStr = Field(min_length=1, max_length=8192)
    tls_verify: bool = True


class LoginResponse(_Body):
    registry: str
    anonymous: bool = Field(description="The registry needs no login: nothing was checked.")
    files: list[str]
    warnings: list[str] = []


class LogoutRequest(_Body):
    registry: str = Field(min_length=1, max_length=255)


class LogoutResponse(_Body):
    registry: str
    removed_from: list[str]


class AuthEntry(_Body):
    registry: str
    username: str
    podman: bool = Field(description="podman and skopeo can use it.")
    bootc: bool = Field(description="`bootc upgrade` can use it (/etc/ostree/auth.json).")


class AuthStatus(_Body):
    registries: list[AuthEntry]
    warnings: list[str] = []


class ConfigView(_Body):
    config: Config
    files: list[str] = Field(description="The files read, lowest priority first.")


class ConfigInitRequest(_Body):
    force: bool = False


class ConfigInitResponse(_Body):
    path: str
    backup: str | None
    profile: str


class ServiceAction(_Body):
    action: Literal["start", "stop"]


__all__ = [
    "API_VERSION",
    "AuthEntry",
    "AuthStatus",
    "ConfigInitRequest",
    "ConfigInitResponse",
    "ConfigView",
    "ErrorBody",
    "LoginRequest",
    "LoginResponse",
    "LogoutRequest",
    "LogoutResponse",
    "ServiceAction",
    "ServiceState",
    "Status",
    "SystemInfo",
    "UpgradeStatus",
]
