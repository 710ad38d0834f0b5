"""Checking a taxonomy: where its leaves are, and each qna.yaml against the schema and the
rules. Every problem names the file, the line and the field; all of them are collected,
none stops the check of the others."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bootlab import yamlfile
from bootlab.errors import BootlabError, Exit, die
from bootlab.taxonomy import rules, schema
from bootlab.taxonomy.model import (
    KNOWLEDGE,
    LEAF_FILE,
    TOP_FOLDERS,
    DocumentRef,
    Kind,
    Leaf,
    Problem,
    QnA,
    Report,
    SeedExample,
    Severity,
)
from bootlab.yamlfile import KeyPath

_SUFFIXES = (".yaml", ".yml")


def find_root(path: Path) -> Path:
    """The taxonomy `path` is in: itself when it holds knowledge/ or compositional_skills/,
    else the nearest folder above that does (so it runs from inside a leaf), else itself."""
    if not path.exists():
        raise die(f"{path}: no such file or directory", exit_code=Exit.NOT_FOUND)
    start = path if path.is_dir() else path.parent
    for candidate in (start, *start.resolve().parents):
        if any((candidate / top).is_dir() for top in TOP_FOLDERS):
            if candidate == start:
                return start
            return Path(os.path.relpath(candidate)) if not path.is_absolute() else candidate
    return start


def tree_files(root: Path) -> list[Path]:
    """Taxonomy files below `root`, relative to it: every YAML file under the top folders
    (InstructLab's rule; a wrongly named one is reported) and qna.yaml files elsewhere."""
    found = []
    for directory, folders, names in os.walk(root):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        relative = Path(directory).relative_to(root)
        in_tree = relative.parts[:1] and relative.parts[0] in TOP_FOLDERS
        for name in sorted(names):
            if name == LEAF_FILE or (in_tree and name.lower().endswith(_SUFFIXES)):
                found.append(relative / name)
    return found


def check(path: Path, only: Sequence[Path] | None = None) -> Report:
    """Check the taxonomy at `path` (a folder, or one qna.yaml): every taxonomy file, or
    the files in `only` (relative to the taxonomy's root)."""
    root = find_root(path)
    everything = tree_files(root)
    if only is not None:
        selected = list(only)
    elif path.is_file():
        selected = [Path(os.path.relpath(path, root))]
    else:
        if not everything and not any((root / top).is_dir() for top in TOP_FOLDERS):
            raise die(
                f"{path}: not a taxonomy (no {', '.join(f'{t}/' for t in TOP_FOLDERS)} folders "
                "and no qna.yaml files)",
                hint="`bootlab taxonomy init PATH` writes a starting taxonomy",
                exit_code=Exit.NOT_FOUND,
            )
        selected = everything
    report = Report(root=root)
    leaves = [f for f in everything if f.name == LEAF_FILE]
    for relative in selected:
        report.files.append(root / relative)
        leaf, problems = check_file(root, relative, leaves)
        report.problems.extend(problems)
        if leaf is not None:
            report.leaves.append(leaf)
    return report


def check_file(
    root: Path, relative: Path, leaves: Iterable[Path] = ()
) -> tuple[Leaf | None, list[Problem]]:
    """One taxonomy file (`relative` to the taxonomy `root`): the leaf when it is valid,
    and every problem found either way. `leaves` are the tree's others, for the layout."""
    display = root / relative
    problems: list[Problem] = []

    def add(line: int, field: KeyPath | str, message: str, severity: Severity = "error") -> None:
        name = field if isinstance(field, str) else rules.field_name(field)
        problems.append(Problem(display, line, name, message, severity))

    if relative.name != LEAF_FILE:
        add(1, "", f"taxonomy files are named {LEAF_FILE}: rename it (InstructLab reads no other)")
        return None, problems
    top = relative.parts[0] if len(relative.parts) > 1 else None
    _layout(relative, top, leaves, add)
    text = _read(root / relative, add)
    if text is None:
        return None, problems
    linted = list(rules.lint(text, str(display)))
    try:
        located = yamlfile.parse_yaml(text, str(display))
    except BootlabError as error:
        line, message = _parse_error(error.message, str(display))
        add(line, "", message)
        for lint_line, lint_message, severity in linted:
            add(lint_line, "", lint_message, severity)
        return None, _sorted(problems)
    for lint_line, lint_message, severity in linted:
        add(lint_line, _field_at(lint_line, located.lines), lint_message, severity)
    data = located.data
    if not isinstance(data, dict):
        add(1, "", "must be a mapping of keys (version, created_by, seed_examples, ...)")
        return None, _sorted(problems)
    kind = _kind(top, data)

    sources = [yamlfile.Source(str(display), located.lines)]

    def line_of(path: KeyPath) -> int:
        found = yamlfile.locate(path, sources)
        return found[1] if found else 1

    version, found = rules.check_version(data, kind)
    for path, message, severity in found:
        add(line_of(path), path or "", message, severity)
    for path, message in schema.validate(data, kind, version or schema.LATEST):
        add(line_of(path), path, message)
    for path, message, severity in rules.check_content(data, kind, located.lines):
        add(line_of(path), path, message, severity)
    problems = _sorted(problems)
    if any(p.severity == "error" for p in problems) or version is None:
        return None, problems
    return _leaf(data, kind, version, display, relative), problems


def _kind(top: str | None, data: dict[str, Any]) -> Kind:
    """By the folder, as InstructLab does; outside the tree, by what the file holds."""
    if top in TOP_FOLDERS:
        return "knowledge" if top == KNOWLEDGE else "skill"
    return "knowledge" if "document" in data or "domain" in data else "skill"


def _layout(relative: Path, top: str | None, leaves: Iterable[Path], add: Any) -> None:
    folder = relative.parent
    if top not in TOP_FOLDERS:
        add(
            1,
            "",
            f"outside {', '.join(f'{t}/' for t in TOP_FOLDERS)}: InstructLab does not read it",
            "warning",
        )
        return
    if len(relative.parts) == 2:
        add(
            1,
            "",
            f"a leaf needs a folder of its own below {top}/, named for its topic "
            f"(e.g. {top}/<subject>/<topic>/{LEAF_FILE})",
        )
        return
    for other in leaves:
        if other == relative or other.parts[:1] != (top,):
            continue
        if other.parent.is_relative_to(folder):
            add(
                1,
                "",
                f"not a leaf folder: {other} is below it; {LEAF_FILE} files go only in "
                "folders with no leaves below them",
            )
        elif folder.is_relative_to(other.parent) and len(other.parts) > 2:
            add(
                1,
                "",
                f"inside the leaf folder of {other}: {LEAF_FILE} files go only in folders "
                "with no leaves below them",
            )


def _read(path: Path, add: Any) -> str | None:
    try:
        raw = path.read_bytes()
    except OSError as error:
        add(1, "", f"cannot read it: {error.strerror}")
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        add(line, "", f"not UTF-8 text (byte {error.start}): save the file as UTF-8")
        return None


def _parse_error(message: str, source: str) -> tuple[int, str]:
    match = re.match(rf"{re.escape(source)}(?::(\d+))?: (.*)", message, re.DOTALL)
    if not match:
        return 1, message
    line = int(match[1]) if match[1] else 1
    text = match[2]
    if "'\\t'" in text:
        text = "a tab in the indentation: YAML indents with spaces only"
    elif text == "the file is empty":
        text = "the file is empty: a leaf needs version, created_by and seed_examples"
    return line, text


def _field_at(line: int, lines: dict[KeyPath, int]) -> str:
    """The innermost field that starts on or before `line`: where a lint problem is."""
    best: tuple[int, int, KeyPath] = (0, 0, ())
    for path, start in lines.items():
        if start <= line and (start, len(path)) > best[:2]:
            best = (start, len(path), path)
    return rules.field_name(best[2])


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.line, p.severity != "error"))


def _text(value: Any) -> str:
    return str(value).strip()


def _leaf(data: dict[str, Any], kind: Kind, version: int, path: Path, relative: Path) -> Leaf:
    examples = []
    for example in data["seed_examples"]:
        context = _text(example["context"]) if "context" in example else None
        if kind == "knowledge":
            pairs = tuple(
                QnA(_text(p["question"]), _text(p["answer"]))
                for p in example["questions_and_answers"]
            )
        else:
            pairs = (QnA(_text(example["question"]), _text(example["answer"])),)
        examples.append(SeedExample(context, pairs))
    document = data.get("document")
    return Leaf(
        kind=kind,
        path=path,
        name=relative.parent.as_posix(),
        version=version,
        created_by=_text(data["created_by"]),
        seed_examples=tuple(examples),
        task_description=_text(data["task_description"]) if kind == "skill" else None,
        domain=_text(data["domain"]) if kind == "knowledge" else None,
        document_outline=_text(data["document_outline"]) if kind == "knowledge" else None,
        document=DocumentRef(
            repo=_text(document["repo"]),
            commit=_text(document["commit"]),
            patterns=tuple(_text(p) for p in document["patterns"]),
        )
        if isinstance(document, dict)
        else None,
    )
