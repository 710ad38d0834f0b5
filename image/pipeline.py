"""The build pipeline, top to bottom: spec → context → image → report.

Each step is a small function that decides for itself whether it applies.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from bootlab import files
from bootlab.errors import BootlabError, die

from image import podman
from image.base import ensure_base
from image.cache import cache_dir, key_of
from image.log import step
from image.render import (
    REPO_ROOT,
    SOURCE_DATE_EPOCH,
    UNITS_DIR,
    Rendered,
    appliance_requirements,
    ml_requirements,
    render,
)
from image.run import output, run
from image.spec import ImageSpec

REVISION_LABEL = "org.opencontainers.image.revision"
WHEEL_INPUTS = ("pyproject.toml", "README.md", "appliance")
# linux_x86_64: the wheels compiled here (ml.compile) carry the plain tag.
_PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(17, 37)] + [
    "manylinux2014_x86_64",
    "linux_x86_64",
]


def git_revision() -> str:
    try:
        revision = output(["git", "-C", REPO_ROOT, "rev-parse", "HEAD"])
        dirty = output(["git", "-C", REPO_ROOT, "status", "--porcelain", "--untracked-files=no"])
    except BootlabError:  # no git, or not a checkout (a tarball): the label says so
        return "unknown"
    return revision + ("-dirty" if dirty else "")


def image_tag(spec: ImageSpec) -> str:
    return f"{spec.registry.repository}:{spec.registry.tag}"


def build_image(
    spec: ImageSpec, tag: str | None = None, no_cache: bool = False
) -> podman.BuiltImage:
    tag = tag or image_tag(spec)
    with step(f"base image {spec.base.image}"):
        ensure_base(spec)
    with tempfile.TemporaryDirectory(prefix="bootlab-context-", dir=cache_dir()) as work:
        context = Path(work)
        write_rendered(render(spec), context)
        build_appliance_wheel(context / "dist")
        copy_units(context)
        copy_spec_files(spec, context)
        wheelhouse = prepare_wheelhouse(spec, context / "wheels")
        normalize_mtimes(context)
        with step(f"building {tag}"):
            built = podman.build(
                context,
                tag,
                {REVISION_LABEL: git_revision()},
                no_cache,
                SOURCE_DATE_EPOCH,
                build_args={"BOOTLAB_WHEELHOUSE": wheelhouse} if wheelhouse else None,
            )
    report(built)
    return built


def write_rendered(rendered: Rendered, context: Path) -> None:
    (context / "Containerfile").write_text(rendered.containerfile)
    for relative, text in rendered.overlay.items():
        target = context / "overlay" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def build_appliance_wheel(dist: Path) -> None:
    """Build the appliance wheel from a clean copy, so stale build/ files never leak in."""
    with step("building the appliance wheel"), tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "src"
        source.mkdir()
        for name in WHEEL_INPUTS:
            origin = REPO_ROOT / name
            if origin.is_dir():
                shutil.copytree(
                    origin,
                    source / name,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
                )
            else:
                shutil.copy2(origin, source / name)
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)}
        build_wheel(source, dist, "building the appliance wheel", "--no-build-isolation", env=env)


def build_wheel(
    requirement: str | Path, dist: Path, what: str, *options: str, env: dict[str, str] | None = None
) -> None:
    """One wheel, without its dependencies, by this interpreter's pip."""
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
    run(
        [*pip, *options, "--wheel-dir", dist, requirement],
        env=env,
        capture=True,
        what=what,
    )


def copy_units(context: Path) -> None:
    """Unit files for /usr/lib/systemd/system; sysusers.d and tmpfiles.d for /usr/lib."""
    shutil.copytree(UNITS_DIR, context / "units", ignore=shutil.ignore_patterns("*.d"))
    for directory in sorted(UNITS_DIR.glob("*.d")):
        shutil.copytree(directory, context / "usrlib" / directory.name)


def copy_spec_files(spec: ImageSpec, context: Path) -> None:
    """Extra files and local models named in the spec, relative to the spec's directory."""
    source_dir = Path(spec.source_dir)
    for index, extra in enumerate(spec.files):
        origin = source_dir / extra.src
        if not origin.is_file():
            raise die(
                f"files[{index}].src: {origin} is not a file", hint="fix the path in the spec"
            )
        (context / "files").mkdir(exist_ok=True)
        shutil.copy2(origin, context / "files" / str(index))
    for model in spec.models:
        if model.path is None:
            continue
        origin = source_dir / model.path
        if not origin.is_dir():
            raise die(
                f"model '{model.name}': {origin} is not a directory",
                hint="fix models[].path in the spec",
            )
        shutil.copytree(origin, context / "models" / model.name)


def base_python_version(spec: ImageSpec) -> str:
    """The base image's own Python (X.Y): wheels must match the interpreter that runs them."""
    return output(
        [
            "podman",
            "run",
            "--rm",
            "--network=none",
            spec.base.image,
            spec.base.python,
            "-c",
            "import sys; print('%d.%d' % sys.version_info[:2])",
        ],
        what=f"asking {spec.base.image} for its Python version",
    )


# An image runs on other machines than the one that built it: compiled code must not use
# this CPU's own instruction set (a llama.cpp built with -march=native died with SIGILL on
# the first VM that booted the dev image). x86-64-v3 (AVX2, FMA, F16C: every x86 server CPU
# since 2013, and qemu's TCG) is the floor; llama.cpp picks nothing at run time beyond it.
PORTABLE_BUILD = {
    "CMAKE_ARGS": "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON",
}


def compile_wheels(spec: ImageSpec, python: str) -> list[Path]:
    """Wheels for the packages that publish none for this Python, built once each, for any
    x86-64-v3 CPU (not only this one)."""
    host = f"{sys.version_info.major}.{sys.version_info.minor}"
    for name in spec.ml.compile:
        if host != python and not compiled_wheel(name, spec.ml.packages[name], build=False):
            raise die(
                f"{name} must be compiled for Python {python}, and this machine runs {host}",
                hint=f"build from a machine with Python {python}, or drop {name} from ml.compile",
            )
    return [compiled_wheel(name, spec.ml.packages[name]) for name in spec.ml.compile]


def compiled_wheel(name: str, version: str, build: bool = True) -> Path:
    """The directory holding `name`'s portable wheel, compiled here once (the image and the
    test tiers' ML venv, scripts/ml-env.sh, share it). With build=False: whether it exists."""
    key = key_of(name, version, PORTABLE_BUILD)
    directory = cache_dir() / "built-wheels" / f"{name}-{version}-portable-{key}"
    if build and not (directory / ".complete").exists():
        with (
            step(f"compiling {name} {version} (once; cached in {directory})"),
            files.cache_entry(directory, marker=".complete") as partial,
        ):
            env = {
                **os.environ,
                **PORTABLE_BUILD,
                "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count()),
            }
            # --no-cache-dir: pip's own wheel cache would hand back a build made for
            # another CPU (its key is the sdist, not the flags).
            build_wheel(
                f"{name}=={version}", partial, f"compiling {name}", "--no-cache-dir", env=env
            )
    return directory if (directory / ".complete").exists() else Path()


def prepare_wheelhouse(spec: ImageSpec, target: Path) -> str | None:
    """Offline profiles install Python packages only from wheels fetched here, once, cached.
    Returns the wheelhouse's key (its inputs, compiled wheels' flags among them)."""
    if not spec.offline:
        return None
    requirements = [*ml_requirements(spec), *appliance_requirements()]
    python = base_python_version(spec)
    compiled = compile_wheels(spec, python)
    wheelhouse = cache_dir() / "wheels" / key_of(requirements, python, _PLATFORMS, compiled)
    if not (wheelhouse / ".complete").exists():
        with (
            step(f"downloading {len(requirements)} requirements for Python {python}"),
            files.cache_entry(wheelhouse, marker=".complete") as partial,
        ):
            platforms = [arg for platform in _PLATFORMS for arg in ("--platform", platform)]
            run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--dest",
                    partial,
                    "--only-binary=:all:",
                    "--python-version",
                    python,
                    *platforms,
                    *(arg for directory in compiled for arg in ("--find-links", directory)),
                    *requirements,
                ],
                capture=True,
                what="downloading the wheelhouse",
            )
            refuse_gpu_wheels(spec, partial)
    target.mkdir()
    for wheel in wheelhouse.glob("*.whl"):
        os.link(wheel, target / wheel.name)  # same filesystem as the cache: no copy
    return wheelhouse.name


def refuse_gpu_wheels(spec: ImageSpec, wheelhouse: Path) -> None:
    """A CPU profile's wheelhouse holding nvidia-* wheels means a resolver picked a CUDA build
    (e.g. PyPI's torch): gigabytes the image cannot use. Stop before it is cached."""
    if spec.accelerator.type == "nvidia":
        return
    cuda = sorted(wheel.name for wheel in wheelhouse.glob("nvidia_*.whl"))
    if cuda:
        raise die(
            f"the wheelhouse for a '{spec.accelerator.type}' accelerator pulled CUDA wheels "
            f"({', '.join(cuda[:3])}{', ...' if len(cuda) > 3 else ''})",
            hint='pin the CPU build in ml.packages (e.g. torch: "2.13.0+cpu") and make its '
            "wheel reachable (PIP_FIND_LINKS, or --extra-index-url "
            "https://download.pytorch.org/whl/cpu in the pip config)",
        )


def normalize_mtimes(context: Path) -> None:
    for path in [context, *context.rglob("*")]:
        os.utime(path, (SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH), follow_symlinks=False)


def report(built: podman.BuiltImage) -> None:
    print(f"tag:    {built.tag}")
    print(f"id:     {built.image_id}")
    print(f"digest: {built.digest}")
    print("layers:")
    for layer in built.layers:
        instruction = _BUILD_NOISE.sub("", " ".join(layer.created_by.split()))
        print(f"  {_human(layer.size):>10}  {instruction[:90]}")
    print(f"  {_human(sum(layer.size for layer in built.layers)):>10}  total")


# History entries read "|1 ARG=value /bin/sh -c #(nop) COPY …": keep only the instruction.
_BUILD_NOISE = re.compile(r"^(\|\d+ (\S+=\S* )+)?(/bin/sh -c )?(#\(nop\) )?")


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


__all__ = ["build_image", "image_tag"]
