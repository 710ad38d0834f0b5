"""The commands behind build.py, each a short function over the spec and the pipeline."""

from __future__ import annotations

import argparse
import difflib
import json
import shlex
from pathlib import Path

from bootlab.auth import credentials_for
from bootlab.errors import Exit, die

from image import log, podman
from image.render import REPO_ROOT, render, render_bib_config
from image.spec import DEFAULT_SPEC, ImageSpec, SpecFile, json_schema

CONTAINERFILE = REPO_ROOT / "Containerfile"
SCHEMA_FILE = REPO_ROOT / "image" / "image.schema.json"
BIB_TYPES = {"qcow2": "qcow2", "ami": "ami", "raw": "raw", "iso": "anaconda-iso"}


def dispatch(args: argparse.Namespace) -> int:
    log.QUIET = args.quiet
    log.quiet_commands(args.quiet)
    spec_file = SpecFile.read(args.spec or DEFAULT_SPEC)
    handler = globals()[f"cmd_{args.command}"]
    return int(handler(args, spec_file))


def spec_label(spec_file: SpecFile) -> str:
    try:
        return str(spec_file.path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(spec_file.path)


def default_containerfile(spec_file: SpecFile) -> str:
    return render(spec_file.resolve(), spec_label(spec_file)).containerfile


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def cmd_check(args: argparse.Namespace, spec_file: SpecFile) -> int:
    for name in spec_file.profiles:
        render(spec_file.resolve(name), spec_label(spec_file))
        log.log(f"  profile {name}: valid, renders")
    problems = []
    expected = default_containerfile(spec_file)
    actual = CONTAINERFILE.read_text() if CONTAINERFILE.exists() else ""
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                actual.splitlines(keepends=True),
                expected.splitlines(keepends=True),
                "Containerfile (committed)",
                "Containerfile (rendered)",
                n=1,
            )
        )
        problems.append(f"Containerfile does not match the default profile's render:\n{diff}")
    if not SCHEMA_FILE.exists() or SCHEMA_FILE.read_text() != schema_text():
        problems.append(f"{SCHEMA_FILE.relative_to(REPO_ROOT)} is out of date")
    if problems:
        raise die(
            "\n".join(problems),
            hint="run `python build.py render --write` and `python build.py schema`",
        )
    print(f"ok: {len(spec_file.profiles)} profiles valid, Containerfile and schema current")
    return Exit.OK


def cmd_render(args: argparse.Namespace, spec_file: SpecFile) -> int:
    if args.write:
        if args.profile and args.profile != spec_file.default_profile:
            raise die(
                "--write renders only the default profile into ./Containerfile",
                hint="drop --profile, or redirect the output of a plain render",
            )
        CONTAINERFILE.write_text(default_containerfile(spec_file))
        print(f"wrote {CONTAINERFILE}")
        return Exit.OK
    print(render(spec_file.resolve(args.profile), spec_label(spec_file)).containerfile, end="")
    return Exit.OK


def cmd_lint(args: argparse.Namespace, spec_file: SpecFile) -> int:
    from image.lint import lint_profile  # noqa: PLC0415

    failures = 0
    for name in spec_file.profiles:
        spec = spec_file.resolve(name)
        findings = lint_profile(spec, render(spec, spec_label(spec_file)))
        for finding in findings:
            print(f"{name}: {finding}")
        failures += len(findings)
        log.log(f"  profile {name}: {len(findings)} findings")
    if failures:
        raise die(f"lint found {failures} problems", hint="see the findings above")
    print(f"ok: {len(spec_file.profiles)} profiles lint clean")
    return Exit.OK


def cmd_build(args: argparse.Namespace, spec_file: SpecFile) -> int:
    from image.pipeline import build_image  # noqa: PLC0415

    build_image(spec_file.resolve(args.profile), args.tag, args.no_cache)
    return Exit.OK


def cmd_push(args: argparse.Namespace, spec_file: SpecFile) -> int:
    from image.pipeline import image_tag  # noqa: PLC0415

    spec = spec_file.resolve(args.profile)
    source = image_tag(spec)
    destination = args.destination or source
    if not podman.image_exists(source):
        raise die(
            f"image {source} is not built yet",
            hint=f"run `python build.py build --profile {spec.profile}` first",
        )
    tls_verify = spec.registry.tls_verify if args.tls_verify is None else args.tls_verify == "true"
    credentials = credentials_for(destination)
    if credentials is None:
        log.log(f"  no credentials for {destination} in the auth file; pushing anonymously")
    podman.push(source, destination, credentials, tls_verify)
    print(f"pushed {source} to {destination}")
    return Exit.OK


def cmd_disk(args: argparse.Namespace, spec_file: SpecFile) -> int:
    from image.pipeline import image_tag  # noqa: PLC0415

    spec: ImageSpec = spec_file.resolve(args.profile)
    if not spec.base.bootc:
        return _own_disk(args, spec)
    if args.size or args.ssh_keys:
        raise die(
            "--size and --ssh-key are for disks bootlab makes itself (profiles without bootc)",
            hint="for a bootc profile, set disk.filesystems and disk.users in the spec",
            exit_code=Exit.USAGE,
        )
    for index, user in enumerate(spec.disk.users):
        if not user.ssh_keys and not user.password_hash:
            raise die(
                f"disk.users[{index}] '{user.name}' has neither ssh_keys nor password_hash: "
                "nobody could log in to the disk image",
                hint="add your SSH public key to disk.users in the spec",
            )
    output: Path = args.output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    config = output / "config.toml"
    config.write_text(render_bib_config(spec, args.disk_type))
    command = [
        "podman",
        "run",
        "--rm",
        "-it",
        "--privileged",
        "--pull=newer",
        "--security-opt",
        "label=type:unconfined_t",
        "-v",
        f"{config}:/config.toml:ro",
        "-v",
        f"{output}:/output",
        "-v",
        "/var/lib/containers/storage:/var/lib/containers/storage",
        spec.disk.builder_image,
        "--type",
        BIB_TYPES[args.disk_type],
        "--rootfs",
        spec.disk.rootfs,
        image_tag(spec),
    ]
    print(f"wrote {config}")
    print("build the disk image with (as root, on a host where the image is in local storage):")
    print("  " + shlex.join(command))
    return Exit.OK


def _own_disk(args: argparse.Namespace, spec: ImageSpec) -> int:
    """A profile without bootc: bootlab makes the disk from the built image itself."""
    from image.disk import make_disk, parse_size  # noqa: PLC0415
    from image.pipeline import image_tag  # noqa: PLC0415

    if args.disk_type not in ("raw", "qcow2"):
        raise die(
            f"profile '{spec.profile}' makes raw or qcow2 disks, not {args.disk_type}",
            hint="use --type raw or --type qcow2 (ami and iso come from bootc-image-builder)",
            exit_code=Exit.USAGE,
        )
    size = parse_size(args.size) if args.size else None
    keys = []
    for key_file in args.ssh_keys:
        try:
            keys += [line for line in key_file.read_text().splitlines() if line.strip()]
        except OSError as error:
            raise die(f"cannot read {key_file}: {error.strerror}", exit_code=Exit.USAGE) from None
    output: Path = args.output.resolve()
    disk = make_disk(
        spec,
        args.image or image_tag(spec),
        output,
        disk_type=args.disk_type,
        size=size,
        authorized_keys=keys,
    )
    print(f"wrote {output / disk.path} ({disk.size // 2**20} MiB, {disk.format}) from {disk.image}")
    print(f"boot it with: python build.py vm --profile {spec.profile} --output {args.output}")
    return Exit.OK


def cmd_vm(args: argparse.Namespace, spec_file: SpecFile) -> int:
    from image.vm import Forward, Machine, run_interactive  # noqa: PLC0415

    forwards = tuple(Forward.parse(text) for text in args.forwards or ["2222:22", "8000:8000"])
    machine = Machine(args.memory, args.cpus, forwards, snapshot=args.snapshot)
    code = run_interactive(args.output.resolve(), machine)
    return Exit.OK if code == 0 else Exit.ERROR


def cmd_schema(args: argparse.Namespace, spec_file: SpecFile) -> int:
    target: Path = args.output or SCHEMA_FILE
    target.write_text(schema_text())
    print(f"wrote {target}")
    return Exit.OK
