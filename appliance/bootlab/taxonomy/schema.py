"""The structure of a qna.yaml: InstructLab's own JSON schemas (the `instructlab-schema`
package, what `ilab taxonomy diff` validates with), run by jsonschema. Its errors are
rewritten here for people: the field's path as written in the file, and what to do."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from instructlab.schema import schema_base
from jsonschema import Draft202012Validator, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from bootlab import yamlfile
from bootlab.taxonomy.model import Kind
from bootlab.yamlfile import KeyPath

# Schema versions each kind accepts. Knowledge is version 3 (document_outline, document
# references and three Q&A pairs a context); skills are still written as 2 (RHEL AI's
# current value) or 3, whose skill schemas are the same.
VERSIONS: dict[Kind, tuple[int, ...]] = {"knowledge": (3,), "skill": (2, 3)}
LATEST = 3

# Why a missing field matters, in the user's terms.
_REQUIRED = {
    "created_by": "who wrote this leaf (your git user name)",
    "domain": "the subject of the document, in a few words (e.g. Astronomy)",
    "document_outline": "a one-line summary of the document",
    "document": "the git repository, commit and file patterns of the document",
    "task_description": "what the skill does, in a sentence",
    "seed_examples": "the examples synthetic data is generated from",
    "context": "the passage of the document these questions are about",
    "questions_and_answers": "three question/answer pairs about the context",
    "question": "the question",
    "answer": "the answer to it",
    "repo": "the git repository's URL",
    "commit": "the commit of the repository to read the document at",
    "patterns": "which files of the repository, e.g. [guide.md]",
}
_TYPES = {
    "string": "text",
    "array": "a list",
    "object": "a mapping of keys",
    "integer": "a whole number",
}


@functools.cache
def _schema(version: int, kind: Kind) -> Draft202012Validator:
    folder = schema_base() / f"v{version}"

    def retrieve(uri: str) -> Resource[Any]:
        text = (folder / uri.removeprefix("./")).read_text(encoding="utf-8")
        return Resource.from_contents(json.loads(text), default_specification=DRAFT202012)

    name = "knowledge.json" if kind == "knowledge" else "compositional_skills.json"
    contents = json.loads((folder / name).read_text(encoding="utf-8"))
    registry: Registry[Any] = Registry(retrieve=retrieve)  # type: ignore[call-arg]
    return Draft202012Validator(contents, registry=registry)


def validate(data: dict[str, Any], kind: Kind, version: int) -> Iterator[tuple[KeyPath, str]]:
    """(field path, message) for each way `data` breaks the schema of `kind`. The version
    itself, repeated questions and the number of Q&A pairs are checked by the rules."""
    validator = _schema(version if version in VERSIONS[kind] else LATEST, kind)
    for error in validator.iter_errors(data):
        yield from _explain(error, kind)


def _explain(error: ValidationError, kind: Kind) -> Iterator[tuple[KeyPath, str]]:
    path: KeyPath = tuple(error.absolute_path)
    if path[:1] == ("version",) or (error.validator == "required" and "'version'" in error.message):
        return  # the rules say which version to use, once
    explain = _EXPLAIN.get(str(error.validator))
    if explain is None:
        yield path, error.message[:200]
    else:
        yield from explain(error, path, kind)


def _required(error: ValidationError, path: KeyPath, kind: Kind) -> Iterator[tuple[KeyPath, str]]:
    match = re.match(r"'(.+)' is a required property", error.message)
    name = match[1] if match else str(error.validator_value)
    why = _REQUIRED.get(name)
    yield (*path, name), f"missing: {why}" if why else "missing"


def _unevaluated(
    error: ValidationError, path: KeyPath, kind: Kind
) -> Iterator[tuple[KeyPath, str]]:
    properties = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
    allowed = set(properties) | ({"version"} if not path else set())
    for key in error.instance:
        if key not in allowed:
            yield (*path, key), _unknown(str(key), allowed, kind, top=not path)


def _type(error: ValidationError, path: KeyPath, kind: Kind) -> Iterator[tuple[KeyPath, str]]:
    expected = error.validator_value
    wanted = _TYPES.get(expected, expected) if isinstance(expected, str) else str(expected)
    yield path, f"must be {wanted} ({_found(error.instance)})"


def _min_length(error: ValidationError, path: KeyPath, kind: Kind) -> Iterator[tuple[KeyPath, str]]:
    yield path, "is empty"


def _min_items(error: ValidationError, path: KeyPath, kind: Kind) -> Iterator[tuple[KeyPath, str]]:
    count = len(error.instance)
    if path[-1:] == ("questions_and_answers",):
        return  # the rules count them: exactly 3
    if path == ("seed_examples",):
        yield path, f"{count} seed examples; at least {error.validator_value} are needed"
    else:
        yield path, f"needs at least {error.validator_value} (has {count})"


def _unique(error: ValidationError, path: KeyPath, kind: Kind) -> Iterator[tuple[KeyPath, str]]:
    if path[-1:] not in (("seed_examples",), ("questions_and_answers",)):
        yield path, "repeats an item"
    # else the rules name the repeated question and where it is first asked


_EXPLAIN: dict[str, Callable[[ValidationError, KeyPath, Kind], Iterator[tuple[KeyPath, str]]]] = {
    "required": _required,
    "unevaluatedProperties": _unevaluated,
    "additionalProperties": _unevaluated,
    "type": _type,
    "minLength": _min_length,
    "minItems": _min_items,
    "uniqueItems": _unique,
}


# Top-level keys only the other kind has: a sign the file is in the wrong folder.
_ONLY = {"knowledge": {"domain", "document", "document_outline"}, "skill": {"task_description"}}


def _unknown(key: str, allowed: set[str], kind: Kind, *, top: bool) -> str:
    other: Kind = "skill" if kind == "knowledge" else "knowledge"
    if top and key in _ONLY[other]:
        where = "knowledge/" if other == "knowledge" else "compositional_skills/"
        return (
            f"unknown key for a {kind} leaf ({other} leaves have it: does the file belong "
            f"under {where}?)"
        )
    return "unknown key" + yamlfile.did_you_mean(key, allowed)


def _found(value: Any) -> str:
    if value is None:
        return "it is empty"
    if isinstance(value, bool):
        return f"found {str(value).lower()}"
    if isinstance(value, str):
        return "found text"
    if isinstance(value, list):
        return "found a list"
    if isinstance(value, dict):
        return "found a mapping"
    return f"found {value!r}"
