"""One table of exit codes: the README's list, the units' RestartPreventExitStatus= and the
daemon's HTTP statuses all come from (or are checked against) bootlab.errors.Exit."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from bootlab.errors import NO_RESTART, Exit

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.unit


def test_readme_lists_every_exit_code_with_its_meaning() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("Exit codes (")
    paragraph = " ".join(readme[start : readme.index("\n\n", start)].split())
    listed = dict(re.findall(r"\b(\d+) ([^,]+?)(?:,|\.$)", paragraph.split("to it):", 1)[1]))
    assert {int(code): meaning for code, meaning in listed.items()} == {
        member.value: member.meaning for member in Exit
    }


@pytest.mark.parametrize("unit", sorted(NO_RESTART))
def test_units_do_not_restart_on_refusals(unit: str) -> None:
    text = (ROOT / "units" / unit).read_text()
    lines = re.findall(r"^RestartPreventExitStatus=(.*)$", text, re.M)
    assert len(lines) == 1, f"{unit} needs one RestartPreventExitStatus= line"
    assert sorted(int(code) for code in lines[0].split()) == sorted(NO_RESTART[unit])


def test_every_unit_with_restart_prevention_is_in_the_table() -> None:
    units = {
        path.name
        for path in (ROOT / "units").rglob("*.service")
        if "RestartPreventExitStatus=" in path.read_text()
    }
    assert units == set(NO_RESTART)


def test_codes_are_unique_and_http_statuses_are_errors() -> None:
    assert len({member.value for member in Exit}) == len(Exit)
    for member in Exit:
        assert member is Exit.OK or 400 <= member.http < 600, member


def _entrypoint_returns(tree: ast.AST) -> list[int]:
    """Lines where a command or entrypoint (main, dispatch, cmd_*) returns a bare number."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and (
            node.name in ("main", "dispatch") or node.name.startswith("cmd_")
        ):
            for inner in ast.walk(node):
                if (
                    isinstance(inner, ast.Return)
                    and isinstance(inner.value, ast.Constant)
                    and isinstance(inner.value.value, int)
                ):
                    lines.append(inner.lineno)
    return lines


def test_no_bare_numeric_exit_codes_in_the_sources() -> None:
    pattern = re.compile(r"exit_code=\d|sys\.exit\(\d|\bEX_[A-Z]+ = \d")
    offenders = []
    sources = [ROOT / "build.py"]
    for folder in ("appliance/bootlab", "image", "bench"):
        sources += sorted((ROOT / folder).rglob("*.py"))
    for path in sources:
        text = path.read_text()
        lines = text.splitlines()
        bad = [n for n, line in enumerate(lines, 1) if pattern.search(line)]
        bad += _entrypoint_returns(ast.parse(text))
        offenders += [f"{path.relative_to(ROOT)}:{n}: {lines[n - 1].strip()}" for n in bad]
    assert offenders == []
