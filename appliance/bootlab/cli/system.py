"""`bootlab status`, `system info`, `login`/`logout`/`auth status` and `config`: the
appliance itself, its registry credentials and its settings, all asked of bootlabd."""

from __future__ import annotations

import argparse
import getpass
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

from bootlab.cli.calls import ask, plain
from bootlab.cli.command import TLS_VERIFY, Arg, Shown, command
from bootlab.cli.output import ago, service_line, table, warn
from bootlab.errors import Exit, die
from bootlab.paths import Paths

if TYPE_CHECKING:
    from bootlab.api import (
        AuthStatus,
        ConfigInitResponse,
        ConfigView,
        LoginResponse,
        LogoutResponse,
        Status,
        SystemInfo,
    )


def cmd_status(args: argparse.Namespace, paths: Paths) -> Shown[Status]:
    status: Status = ask(paths, "GET", "/v1/status")
    return Shown(status, _show_status)


def _show_status(status: Status) -> None:
    print(f"bootlab {status.version} on {status.hostname} — {status.profile}")
    table([service_line(state) for state in status.services])
    upgrade = status.upgrade
    if upgrade is None:
        upgrade_text = "not checked yet"
    elif upgrade.available:
        upgrade_text = f"update available: {upgrade.message} — run `bootc upgrade`"
    elif upgrade.available is None:
        upgrade_text = f"check failed: {upgrade.message}"
    else:
        upgrade_text = "up to date"
    if upgrade is not None:
        upgrade_text += f" (checked {ago(upgrade.checked_at)})"
    table(
        [
            ["GPU lock:", status.gpu_holder or "free"],
            ["registries:", ", ".join(status.registries) or "none (bootlab login REGISTRY)"],
            ["upgrades:", upgrade_text],
            ["config:", f"error: {status.config_error}" if status.config_error else "ok"],
        ]
    )
    warn(status.warnings)


def cmd_system_info(args: argparse.Namespace, paths: Paths) -> Shown[SystemInfo]:
    info: SystemInfo = ask(paths, "GET", "/v1/system/info")
    return Shown(info, _show_system_info)


def _show_system_info(info: SystemInfo) -> None:
    gib = 1024**3
    table(
        [
            ["profile:", info.profile.name],
            ["host:", f"{info.hostname} — {info.os}, kernel {info.kernel}"],
            ["cpu:", f"{info.cpu_count} x {info.cpu_model}"],
            [
                "memory:",
                f"{info.memory_total_mib / 1024:.1f} GiB "
                f"({info.memory_available_mib / 1024:.1f} GiB available)",
            ],
            [
                "disk:",
                f"{info.disk_path}: {info.disk_free_bytes / gib:.1f} GiB free of "
                f"{info.disk_total_bytes / gib:.1f} GiB",
            ],
        ]
    )
    if info.gpus:
        print()
        table(
            [
                [
                    str(g.index),
                    g.vendor,
                    g.name,
                    f"{g.memory_mib / 1024:.0f} GiB",
                    g.driver or "-",
                ]
                for g in info.gpus
            ],
            header=["GPU", "VENDOR", "NAME", "MEMORY", "DRIVER"],
        )
    warn(info.warnings)


def cmd_login(args: argparse.Namespace, paths: Paths) -> Shown[LoginResponse]:
    interactive = sys.stdin.isatty()
    username = args.username
    if not username:
        if not interactive:
            raise die("no username: pass --username", exit_code=Exit.USAGE)
        username = input("Username: ").strip()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif interactive:
        password = getpass.getpass("Password: ")
    else:
        raise die(
            "no terminal to ask for the password",
            hint="pass it on standard input: ... | bootlab login --password-stdin REGISTRY",
            exit_code=Exit.USAGE,
        )
    if not password:
        raise die("the password is empty", exit_code=Exit.USAGE)
    body = {
        "registry": args.registry,
        "username": username,
        "password": password,
        "tls_verify": args.tls_verify,
    }
    result: LoginResponse = ask(paths, "POST", "/v1/auth/login", body)
    return Shown(result, _show_login)


def _show_login(result: LoginResponse) -> None:
    warn(result.warnings)
    print(f"Login Succeeded: {result.registry} (for podman and bootc upgrade)")


def cmd_logout(args: argparse.Namespace, paths: Paths) -> Shown[LogoutResponse]:
    result: LogoutResponse = ask(paths, "POST", "/v1/auth/logout", {"registry": args.registry})
    if not result.removed_from:
        raise die(
            f"not logged in to {result.registry}",
            hint="bootlab auth status",
            exit_code=Exit.ERROR,
        )
    return Shown(result, lambda r: print(f"Removed login credentials for {r.registry}"))


def cmd_auth_status(args: argparse.Namespace, paths: Paths) -> Shown[AuthStatus]:
    status: AuthStatus = ask(paths, "GET", "/v1/auth")
    return Shown(status, _show_auth_status)


def _show_auth_status(status: AuthStatus) -> None:
    yes_no = {True: "yes", False: "no"}
    table(
        [
            [e.registry, e.username or "-", yes_no[e.podman], yes_no[e.bootc]]
            for e in status.registries
        ],
        header=["REGISTRY", "USERNAME", "PODMAN", "BOOTC UPGRADE"],
    )
    if not status.registries:
        print("not logged in to any registry (bootlab login REGISTRY)")
    warn(status.warnings)


def cmd_config_init(args: argparse.Namespace, paths: Paths) -> Shown[ConfigInitResponse]:
    result: ConfigInitResponse = ask(paths, "POST", "/v1/config/init", {"force": args.force})
    return Shown(result, _show_config_init)


def _show_config_init(result: ConfigInitResponse) -> None:
    if result.backup:
        print(f"kept the old file as {result.backup}")
    print(f"wrote {result.path} for {result.profile}")


def cmd_config_show(args: argparse.Namespace, paths: Paths) -> Shown[ConfigView]:
    view: ConfigView = ask(paths, "GET", "/v1/config")
    return Shown(view, _show_config)


def _show_config(view: ConfigView) -> None:
    import yaml  # noqa: PLC0415 - only here

    print(f"# from: {', '.join(view.files) or 'built-in defaults'}")
    print(yaml.safe_dump(plain(view.config), sort_keys=False).rstrip())


NOUNS = {
    "auth": "Registry credentials",
    "system": "This machine",
    "config": "Appliance settings",
}

COMMANDS = (
    command("status", "Services, GPU lock, registries, upgrades", cmd_status, json=True),
    command(
        "login",
        "Log in to a registry, for podman and bootc upgrade alike",
        cmd_login,
        Arg(("registry",), help="host[:port], e.g. quay.io"),
        Arg(("-u", "--username")),
        Arg(
            ("--password-stdin",),
            action="store_true",
            help="read the password from standard input (never from arguments)",
        ),
        replace(TLS_VERIFY, help="verify the registry's TLS certificate (default true)"),
    ),
    command("logout", "Forget a registry's credentials", cmd_logout, Arg(("registry",))),
    command("auth status", "Registries logged in to", cmd_auth_status, json=True),
    command(
        "system info",
        "GPUs, CPU, memory, disk and hardware profile",
        cmd_system_info,
        json=True,
    ),
    command(
        "config init",
        "Write /etc/bootlab/config.yaml with defaults for this machine",
        cmd_config_init,
        Arg(("--force",), action="store_true", help="replace (and keep aside) the old file"),
    ),
    command("config show", "Settings in effect", cmd_config_show, json=True),
)
