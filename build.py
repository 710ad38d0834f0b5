#!/usr/bin/env python3
"""bootlab build side: spec → Containerfile → image → registry → disk-image config.

python build.py check                 validate every profile; fail if Containerfile drifted
python build.py render [--profile P]  print (or --write) a profile's Containerfile
python build.py lint                  hadolint + structural checks on every profile
python build.py build [--profile P]   build the image through the podman API
python build.py push [--profile P]    push it with the containers auth file's credentials
python build.py disk --type qcow2     write bootc-image-builder's config.toml, print the command
python build.py schema                write the spec's JSON schema for editors
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

# bootlab (the appliance package, whose error type the build side shares) and image come from
# the project's install: `pip install -e '.[dev]'` (scripts/setup.sh) installs both, into
# .venv. Run by another Python, build.py hands over to that one, or says how to make it.
try:
    from bootlab.errors import reported
except ModuleNotFoundError:
    _VENV = Path(__file__).resolve().parent / ".venv"
    if (_VENV / "bin" / "python").exists() and Path(sys.prefix).resolve() != _VENV.resolve():
        os.execv(_VENV / "bin" / "python", [str(_VENV / "bin" / "python"), *sys.argv])  # noqa: S606 - this script again, by the project's Python
    sys.exit(
        "error: the bootlab project is not installed for this Python "
        f"({sys.executable})\n  hint: run `bash scripts/setup.sh` (it makes .venv), then "
        "`.venv/bin/python build.py ...`, or `source scripts/env.sh` first"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="build.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--spec", type=Path, default=None, help="spec file (default: image/image.yaml)"
    )
    parser.add_argument("--quiet", action="store_true", help="only results, no step log")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        return sub

    command("check", "validate every profile; fail when Containerfile or schema drifted")
    render = command("render", "print a profile's Containerfile")
    render.add_argument("--profile")
    render.add_argument(
        "--write", action="store_true", help="write the default profile's render to ./Containerfile"
    )
    command("lint", "hadolint and structural checks on every profile's render")
    build = command("build", "build the image through the podman API socket")
    build.add_argument("--profile")
    build.add_argument("--tag", help="tag to build (default: registry.repository:registry.tag)")
    build.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    push = command("push", "push the built image with credentials from the containers auth file")
    push.add_argument("--profile")
    push.add_argument("--to", dest="destination", help="destination (default: from the spec)")
    push.add_argument(
        "--tls-verify", choices=["true", "false"], default=None, help="override registry.tls_verify"
    )
    disk = command(
        "disk",
        "a disk image: bootc profiles get bootc-image-builder's config.toml and command; "
        "profiles without bootc (dev) a raw or qcow2 disk made here from the built image",
    )
    disk.add_argument("--profile")
    disk.add_argument(
        "--type", dest="disk_type", required=True, choices=["qcow2", "ami", "raw", "iso"]
    )
    disk.add_argument(
        "--output",
        type=Path,
        default=Path("output"),
        help="directory for config.toml and the disk image (default: ./output)",
    )
    disk.add_argument("--image", help="image to make the disk of (default: the profile's tag)")
    disk.add_argument("--size", help="disk size, e.g. 16G (default: the files plus 4 GiB)")
    disk.add_argument(
        "--ssh-key",
        dest="ssh_keys",
        type=Path,
        action="append",
        default=[],
        help="a public key file root may log in with (repeatable)",
    )
    vm = command("vm", "boot the disk that `disk` made under qemu, serial console here")
    vm.add_argument("--profile")
    vm.add_argument(
        "--output", type=Path, default=Path("output"), help="the disk's directory (./output)"
    )
    vm.add_argument(
        "--forward",
        dest="forwards",
        action="append",
        help="HOSTPORT:GUESTPORT on 127.0.0.1 (repeatable; default 2222:22 and 8000:8000)",
    )
    vm.add_argument("--memory", type=int, default=4096, help="MiB of memory (default 4096)")
    vm.add_argument("--cpus", type=int, default=2, help="virtual CPUs (default 2)")
    vm.add_argument(
        "--snapshot", action="store_true", help="keep the disk unchanged (writes are discarded)"
    )
    schema = command("schema", "write the spec's JSON schema")
    schema.add_argument(
        "--output", type=Path, default=None, help="file to write (default: image/image.schema.json)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    def dispatch() -> int:
        from image import cli  # noqa: PLC0415 - keep `--help` instant

        return cli.dispatch(args)

    return reported(dispatch, bugs=True)


if __name__ == "__main__":
    sys.exit(main())
