"""The rules InstructLab's tools add on top of the schema, and bootlab's own.

Text (before the YAML is read): yamllint with the configuration `ilab taxonomy diff` uses
(relaxed, no line length), so a file that passes here passes there; tab characters and
text that was UTF-8 read as Windows-1252 ("Ã©", "â€™") are flagged.

Content (after the schema):

- the version each kind takes (knowledge 3; skills 2 or 3);
- exactly 3 question/answer pairs per knowledge context (the v3 format; the schema only
  asks for at least 3);
- lengths. RHEL AI documents a context of at most 500 tokens and questions and answers of
  at most 250 tokens each, for knowledge and skills alike ("Creating skills and knowledge
  YAML files", RHEL AI 1.3-1.5, the field tables of chapters 2 and 3). A file is checked
  before any tokenizer is at hand, so the limits are in characters at about 4 characters a
  token (English text with Llama-family and Granite tokenizers; the same rough measure as
  `bootlab data import`): 2000 characters a context, 1000 a question or an answer. Other
  scripts (Chinese, Japanese) take more tokens per character, so the check is lenient for
  them. InstructLab's contribution guide also asks for no more than about 2300 words of
  questions and answers in one file: past that is a warning, as the guide says "around";
- questions asked once in a file (a grounded skill may ask one question about different
  contexts), no blank text, and a document commit that does not move.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bootlab.taxonomy.model import Kind, Severity
from bootlab.taxonomy.schema import VERSIONS
from bootlab.yamlfile import KeyPath

Found = tuple[KeyPath, str, Severity]

CHARS_PER_TOKEN = 4
MAX_CONTEXT_TOKENS = 500
MAX_QUESTION_TOKENS = 250
MAX_ANSWER_TOKENS = 250
MAX_CONTEXT_CHARS = MAX_CONTEXT_TOKENS * CHARS_PER_TOKEN
MAX_QUESTION_CHARS = MAX_QUESTION_TOKENS * CHARS_PER_TOKEN
MAX_ANSWER_CHARS = MAX_ANSWER_TOKENS * CHARS_PER_TOKEN
MAX_QNA_WORDS = 2300
PAIRS_PER_CONTEXT = 3

# What `ilab taxonomy diff` lints with (instructlab-schema's DEFAULT_YAMLLINT_CONFIG).
YAMLLINT_CONFIG = "{extends: relaxed, rules: {line-length: disable}}"
# Rules whose findings the YAML parser reports anyway, with the line and a clearer message.
_PARSER_RULES = {None, "key-duplicates"}
_MOJIBAKE = re.compile(r"Ã[\u00a0-\u00bf]|â€")
_MOVING_REFS = re.compile(r"^(HEAD|main|master|latest|trunk|develop)$|/")
_COMMIT = re.compile(r"^[0-9a-fA-F]{7,64}$")
_TEXT_FIELDS = (
    "created_by",
    "domain",
    "document_outline",
    "task_description",
    "context",
    "question",
    "answer",
)


@functools.cache
def _yamllint_config() -> Any:
    from yamllint.config import YamlLintConfig  # noqa: PLC0415 - only when linting

    return YamlLintConfig(YAMLLINT_CONFIG)


def lint(text: str, name: str = "FILE") -> Iterator[tuple[int, str, Severity]]:
    """(line, message, severity) for the text of the file `name`, before it is parsed. A
    rule broken on many lines is reported once, at the first, with the others counted."""
    from yamllint import linter  # noqa: PLC0415

    by_rule: dict[str, list[Any]] = {}
    for problem in linter.run(text, _yamllint_config()):
        if problem.rule not in _PARSER_RULES:
            by_rule.setdefault(problem.rule, []).append(problem)
    for rule, found in by_rule.items():
        first = found[0]
        more = f" (and {len(found) - 1} more lines)" if len(found) > 1 else ""
        message = f"{first.desc}{more} (yamllint {rule})"
        if rule == "trailing-spaces":
            message += f": ilab refuses them too; sed -i 's/[[:space:]]*$//' {shlex.quote(name)}"
        severity: Severity = "error" if any(p.level == "error" for p in found) else "warning"
        yield first.line, message, severity
    lines = text.splitlines()
    tabs = [number for number, line in enumerate(lines, start=1) if "\t" in line]
    if tabs:
        more = f" (and {len(tabs) - 1} more lines)" if len(tabs) > 1 else ""
        yield (
            tabs[0],
            f"a tab character{more}: YAML indents with spaces, and tabs in text come out "
            "differently in every prompt; use spaces",
            "warning",
        )
    garbled = [number for number, line in enumerate(lines, start=1) if _MOJIBAKE.search(line)]
    if garbled:
        sample = _MOJIBAKE.search(lines[garbled[0] - 1])
        yield (
            garbled[0],
            f"'{sample[0] if sample else ''}' looks like UTF-8 text read as Windows-1252 "
            "(copied from a garbled page?): fix the characters",
            "warning",
        )


def check_version(data: dict[str, Any], kind: Kind) -> tuple[int | None, list[Found]]:
    """The version to validate with (None when unusable), and what is wrong with it."""
    accepted = " or ".join(str(v) for v in VERSIONS[kind])
    if "version" not in data:
        return None, [((), f"version: missing: {kind} leaves take version: {accepted}", "error")]
    version = data["version"]
    if not isinstance(version, int) or isinstance(version, bool):
        return None, [(("version",), f"must be a whole number: {accepted}", "error")]
    if version not in VERSIONS[kind]:
        detail = (
            "knowledge leaves are written in InstructLab's version 3 format (document_outline, "
            "document, 3 Q&A pairs a context)"
            if kind == "knowledge"
            else "skills are written as version 2 or 3"
        )
        return None, [(("version",), f"{version} is not supported: {detail}", "error")]
    return version, []


def check_content(data: dict[str, Any], kind: Kind, lines: dict[KeyPath, int]) -> Iterator[Found]:
    """Bootlab's rules on a parsed file; only parts with the right shape are looked at (the
    schema reports the rest). `lines` places each field, to point back at a first use."""
    yield from _blank_text(data, ())
    examples = data.get("seed_examples")
    if isinstance(examples, list):
        yield from _examples(examples, kind, lines)
    document = data.get("document")
    if kind == "knowledge" and isinstance(document, dict):
        yield from _document(document)


def _blank_text(node: Any, path: KeyPath) -> Iterator[Found]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _TEXT_FIELDS and isinstance(value, str) and value and not value.strip():
                yield (*path, key), "is blank", "error"
            else:
                yield from _blank_text(value, (*path, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _blank_text(item, (*path, index))


@dataclass
class _Seen:
    """What the examples of one file have used so far."""

    lines: dict[KeyPath, int]
    questions: dict[tuple[str, str], KeyPath] = field(default_factory=dict)
    contexts: dict[str, KeyPath] = field(default_factory=dict)
    words: int = 0
    grounded: int = 0


def _examples(examples: list[Any], kind: Kind, lines: dict[KeyPath, int]) -> Iterator[Found]:
    seen = _Seen(lines)
    for index, example in enumerate(examples):
        if isinstance(example, dict):
            yield from _example(("seed_examples", index), example, kind, seen)
    if kind == "skill" and 0 < seen.grounded < sum(isinstance(e, dict) for e in examples):
        yield (
            ("seed_examples",),
            f"{seen.grounded} of {len(examples)} seed examples have a context: a skill is "
            "grounded (every example has one) or freeform (none has)",
            "warning",
        )
    if seen.words > MAX_QNA_WORDS:
        yield (
            ("seed_examples",),
            f"{seen.words} words of questions and answers: InstructLab's guide asks for at most "
            f"around {MAX_QNA_WORDS}, so the seed examples fit the teacher's prompt",
            "warning",
        )


def _example(here: KeyPath, example: dict[str, Any], kind: Kind, seen: _Seen) -> Iterator[Found]:
    context = example.get("context")
    scope = ""  # knowledge: a question is asked once in the whole file
    if isinstance(context, str):
        seen.grounded += 1
        yield from _length((*here, "context"), context, MAX_CONTEXT_CHARS, MAX_CONTEXT_TOKENS)
        key = _normal(context)
        if kind == "knowledge" and key in seen.contexts:
            yield (
                (*here, "context"),
                f"the same context as {_dotted(seen.contexts[key], seen.lines)}: each seed "
                "example needs its own passage of the document",
                "warning",
            )
        seen.contexts.setdefault(key, (*here, "context"))
        if kind == "skill":
            scope = key  # a grounded skill may ask one question about different contexts
    if kind == "skill":
        yield from _pair(here, example, scope, seen)
        return
    pairs = example.get("questions_and_answers")
    if not isinstance(pairs, list):
        return
    if len(pairs) != PAIRS_PER_CONTEXT:
        yield (
            (*here, "questions_and_answers"),
            f"{len(pairs)} question/answer pairs; a knowledge context takes exactly "
            f"{PAIRS_PER_CONTEXT}",
            "error",
        )
    for number, pair in enumerate(pairs):
        if isinstance(pair, dict):
            where = (*here, "questions_and_answers", number)
            for key in pair:
                if key not in ("question", "answer"):
                    yield (*where, key), "unknown key: InstructLab ignores it", "warning"
            yield from _pair(where, pair, scope, seen)


def _pair(where: KeyPath, pair: dict[str, Any], scope: str, seen: _Seen) -> Iterator[Found]:
    question, answer = pair.get("question"), pair.get("answer")
    if isinstance(question, str):
        seen.words += len(question.split())
        yield from _length((*where, "question"), question, MAX_QUESTION_CHARS, MAX_QUESTION_TOKENS)
        key = (scope, _normal(question))
        first = seen.questions.get(key)
        if first is not None and key[1]:
            yield (
                (*where, "question"),
                f"the same question as {_dotted(first, seen.lines)}"
                + (" (with the same context)" if scope else "")
                + ": ask each question once",
                "error",
            )
        seen.questions.setdefault(key, (*where, "question"))
    if isinstance(answer, str):
        seen.words += len(answer.split())
        yield from _length((*where, "answer"), answer, MAX_ANSWER_CHARS, MAX_ANSWER_TOKENS)


def _length(path: KeyPath, text: str, limit: int, tokens: int) -> Iterator[Found]:
    size = len(text.strip())
    if size > limit:
        yield (
            path,
            f"{size} characters, over the limit of {limit} (RHEL AI documents {tokens} tokens; "
            f"about {CHARS_PER_TOKEN} characters a token): shorten it",
            "error",
        )


def _document(document: dict[str, Any]) -> Iterator[Found]:
    commit = document.get("commit")
    if isinstance(commit, str) and commit.strip():
        if _MOVING_REFS.search(commit.strip()):
            yield (
                ("document", "commit"),
                f"'{commit}' is a branch, and a branch moves: use the commit's id "
                "(git rev-parse HEAD in the document's repository)",
                "warning",
            )
        elif not _COMMIT.match(commit.strip()):
            yield (
                ("document", "commit"),
                f"'{commit}' is not a commit id (7 to 64 hex digits): use the commit's id "
                "(git rev-parse HEAD in the document's repository)",
                "warning",
            )
        elif set(commit.strip()) == {"0"}:
            yield (
                ("document", "commit"),
                "a placeholder: set the commit of the repository holding your document",
                "warning",
            )
    patterns = document.get("patterns")
    if isinstance(patterns, list):
        for index, pattern in enumerate(patterns):
            if isinstance(pattern, str) and not pattern.lower().endswith((".md", ".pdf", "*")):
                yield (
                    ("document", "patterns", index),
                    f"'{pattern}' is neither Markdown nor PDF, the document types RHEL AI reads",
                    "warning",
                )


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())


def _dotted(path: KeyPath, lines: dict[KeyPath, int]) -> str:
    line = lines.get(path)
    return field_name(path) + (f" (line {line})" if line else "")


def field_name(path: KeyPath) -> str:
    """`('seed_examples', 0, 'context')` → `seed_examples[0].context`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text
