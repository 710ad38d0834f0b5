"""YAML files whose every key keeps its line, and the one explainer that turns a validation
error into `FILE:LINE: key.path: message (did you mean ...)` lines.

Shared by the image spec (build side), the appliance config and job files (inside the image)
and taxonomy leaves.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bootlab.errors import die

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Located:
    data: Any
    lines: dict[KeyPath, int]


def parse_yaml(text: str, source: str) -> Located:
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as error:  # the reader refuses control characters up front
        raise die(f"{source}: not valid YAML: {error}", hint="fix the file's text") from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise die(f"{source}: the file is empty", hint="write at least one setting")
        lines: dict[KeyPath, int] = {}
        _record_lines(node, (), lines, source)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        raise die(
            f"{where}: not valid YAML: {error.problem}", hint="fix the syntax there"
        ) from None
    except yaml.YAMLError as error:  # e.g. a control character the reader refuses
        raise die(f"{source}: not valid YAML: {error}", hint="fix the file's text") from None
    finally:
        loader.dispose()
    return Located(data, lines)


_STRING_TAG = "tag:yaml.org,2002:str"


def _record_lines(
    node: yaml.Node,
    path: KeyPath,
    lines: dict[KeyPath, int],
    source: str,
    parents: frozenset[int] = frozenset(),
) -> None:
    line = node.start_mark.line + 1
    if id(node) in parents:
        raise die(f"{source}:{line}: an alias refers to itself", hint="remove the recursive alias")
    parents = parents | {id(node)}
    lines[path] = line
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STRING_TAG:
                raise die(
                    f"{source}:{key_line}: keys must be plain words",
                    hint="quote the key, or use the name of a setting",
                )
            key = key_node.value
            if key in seen:
                line = key_node.start_mark.line + 1
                raise die(f"{source}:{line}: key '{key}' appears twice", hint="keep one of them")
            seen.add(key)
            _record_lines(value_node, (*path, key), lines, source, parents)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, (*path, index), lines, source, parents)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Profile values win; mappings merge key by key, lists and scalars are replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def data_path(loc: tuple[str | int, ...], data: Any) -> KeyPath:
    """Pydantic's error location minus the union tags it inserts (e.g. 'nvidia')."""
    path: list[str | int] = []
    node: Any = data
    for part in loc:
        # Separate branches: mypy narrows the list index only in its own branch.
        if isinstance(node, dict) and part in node:  # noqa: SIM114
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        elif isinstance(part, str) and part in _union_tags(node):
            continue  # a discriminated union's tag, not a key in the file
        else:
            node = None
        path.append(part)
    return tuple(path)


def _union_tags(node: Any) -> set[str]:
    if isinstance(node, dict) and isinstance(node.get("type"), str):
        return {node["type"]}
    return set()


def read_yaml(path: Path, *, hint: str) -> Located | None:
    """The file parsed with its line map; None when it does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except PermissionError:
        raise die(
            f"cannot read {path}: permission denied",
            hint=f"make it readable by root without overrides: chmod 0644 {path}",
        ) from None
    except OSError as error:
        raise die(f"cannot read {path}: {error.strerror}", hint=hint) from None
    except UnicodeDecodeError as error:
        raise die(
            f"{path}: not UTF-8 text (byte {error.start})", hint="save the file as UTF-8"
        ) from None
    return parse_yaml(text, str(path))


@dataclass(frozen=True)
class Source:
    """Where settings were written: the file, its line map, and the key path the settings
    sit under in it (a spec's `("profiles", "dev")`; nothing for a config file)."""

    path: str
    lines: Mapping[KeyPath, int]
    root: KeyPath = ()


def locate(key_path: KeyPath, sources: Sequence[Source]) -> tuple[Source, int] | None:
    """The source and line of the deepest part of `key_path` written anywhere; at the same
    depth the later source wins (an admin's file over the image's, a profile over common)."""
    for depth in range(len(key_path), -1, -1):
        for source in reversed(sources):
            line = source.lines.get((*source.root, *key_path[:depth]))
            if line is not None:
                return source, line
    return None


def did_you_mean(word: str, known: Iterable[str]) -> str:
    guess = difflib.get_close_matches(word, sorted(known), n=1)
    return f" (did you mean '{guess[0]}'?)" if guess else ""


def explain(
    error: ValidationError,
    data: Any,
    sources: Sequence[Source],
    *,
    known_keys: Iterable[str],
    unknown: str = "unknown key",
) -> str:
    """Every problem pydantic found in `data` (merged from `sources`) as one
    `FILE:LINE: key.path: message` line, the key path as written; the first line says how
    many more follow."""
    known = sorted(known_keys)
    problems = []
    for item in error.errors():
        key_path = data_path(item["loc"], data)
        found = locate(key_path, sources)
        source, line = found or (sources[-1], sources[-1].lines.get(sources[-1].root, 1))
        dotted = ".".join(str(part) for part in (*source.root, *key_path)) or "(top level)"
        kind = item["type"]
        if kind == "extra_forbidden":
            message = unknown + did_you_mean(str(key_path[-1]), known)
        elif kind == "missing":
            message = "required key is missing"
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{source.path}:{line}: {dotted}: {message}")
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return "\n  ".join([problems[0] + more, *problems[1:]])
