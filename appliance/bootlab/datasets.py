"""Training data: InstructLab's messages JSONL (`{"messages": [{"role", "content"}, ...]}`),
validated line by line before any compute is spent, then kept under
/var/lib/bootlab/datasets/<name>/ (data.jsonl and what was found in it)."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bootlab import files
from bootlab.errors import Exit, die
from bootlab.store.layout import check_name

ROLES = ("system", "user", "assistant")
MAX_ERRORS_SHOWN = 10
CHARS_PER_TOKEN = 4  # a rough count, for refusing samples far beyond the context up front


@dataclass
class Report:
    samples: int = 0
    messages: int = 0
    assistant_chars: int = 0
    longest_tokens: int = 0
    errors: list[str] = field(default_factory=list)


def validate(path: Path, *, context: int | None = None) -> Report:
    """Every problem with its line number; nothing is trained from a file with any."""
    report = Report()
    try:
        handle = path.open("rb")
    except OSError as error:
        raise die(f"cannot read {path}: {error.strerror}", exit_code=Exit.USAGE) from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            problem = _check_line(raw, report, context)
            if problem:
                report.errors.append(f"{path}:{number}: {problem}")
    if not report.samples and not report.errors:
        report.errors.append(f"{path}: no samples (one JSON object per line)")
    return report


def _check_line(raw: bytes, report: Report, context: int | None) -> str | None:
    try:
        sample = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        return f"not valid JSON ({error.__class__.__name__})"
    if not isinstance(sample, dict) or not isinstance(sample.get("messages"), list):
        return 'each line must be an object with a "messages" list'
    messages: list[Any] = sample["messages"]
    problem = _check_messages(messages)
    if problem:
        return problem
    tokens = sum(len(m["content"]) for m in messages) // CHARS_PER_TOKEN
    if context is not None and tokens > context:
        return f"about {tokens} tokens, beyond the model's context of {context}"
    report.samples += 1
    report.messages += len(messages)
    report.assistant_chars += sum(len(m["content"]) for m in messages if m["role"] == "assistant")
    report.longest_tokens = max(report.longest_tokens, tokens)
    return None


def _check_messages(messages: list[Any]) -> str | None:
    roles = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages[{index}] is not an object"
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            return f"messages[{index}].role is {role!r}; one of {', '.join(ROLES)}"
        if not isinstance(content, str) or not content.strip():
            return f"messages[{index}].content is empty"
        roles.append(role)
    if "user" not in roles or "assistant" not in roles:
        return "a sample needs a user message and an assistant answer to learn from"
    return None


@dataclass(frozen=True)
class Dataset:
    name: str
    source: str
    sha256: str
    samples: int
    messages: int
    longest_tokens: int
    imported_at: float


def directory(state: Path) -> Path:
    return state / "datasets"


def import_file(
    state: Path, source: Path, name: str, *, context: int | None = None, origin: str | None = None
) -> Dataset:
    """Validate and keep `source` as dataset `name`; `origin` names it in the record (the
    user's path of an upload), default: `source`."""
    check_name(name)
    report = validate(source, context=context)
    if report.errors:
        shown = report.errors[:MAX_ERRORS_SHOWN]
        more = len(report.errors) - len(shown)
        raise die(
            f"{len(report.errors)} problem(s) in {source}:\n  "
            + "\n  ".join(shown)
            + (f"\n  ... and {more} more" if more else ""),
            hint="fix the lines named; nothing was imported",
            exit_code=Exit.DATA,
        )
    target = directory(state) / name
    staging = directory(state) / f".{name}.{time.monotonic_ns()}"
    staging.mkdir(parents=True)
    try:
        digest = hashlib.sha256()
        with source.open("rb") as reader, (staging / "data.jsonl").open("wb") as writer:
            while block := reader.read(1 << 20):
                digest.update(block)
                writer.write(block)
        dataset = Dataset(
            name,
            origin or str(source),
            digest.hexdigest(),
            report.samples,
            report.messages,
            report.longest_tokens,
            time.time(),
        )
        files.write_atomic(staging / "dataset.json", json.dumps(asdict(dataset)).encode())
        if target.exists():
            shutil.rmtree(target)  # a re-import replaces it; the new copy is already whole
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dataset


def listing(state: Path) -> list[Dataset]:
    found = []
    for meta in sorted(directory(state).glob("*/dataset.json")):
        try:
            found.append(Dataset(**json.loads(meta.read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return found


def get(state: Path, name: str) -> Dataset:
    check_name(name)
    try:
        return Dataset(**json.loads((directory(state) / name / "dataset.json").read_text()))
    except FileNotFoundError:
        raise die(
            f"no dataset named '{name}'", hint="bootlab data list", exit_code=Exit.NOT_FOUND
        ) from None
