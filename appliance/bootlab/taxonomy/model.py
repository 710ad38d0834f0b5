"""What a taxonomy check hands back: the leaves it read and the problems it found."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

# The folders at a taxonomy's top, as InstructLab lays them out. Knowledge leaves teach
# facts from documents; both kinds of skills teach a task (foundational skills use the
# compositional skill schema, as InstructLab's parser does).
KNOWLEDGE = "knowledge"
SKILL_FOLDERS = ("compositional_skills", "foundational_skills")
TOP_FOLDERS = (KNOWLEDGE, *SKILL_FOLDERS)
LEAF_FILE = "qna.yaml"

Kind = Literal["knowledge", "skill"]
Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class QnA:
    question: str
    answer: str


@dataclass(frozen=True)
class SeedExample:
    """One seed example: a knowledge context with its question/answer pairs, or one skill
    example (a question, its answer, and a context for grounded skills)."""

    context: str | None
    pairs: tuple[QnA, ...]


@dataclass(frozen=True)
class DocumentRef:
    """Where a knowledge leaf's documents are: a git repository, the commit to read them at,
    and glob patterns of the files in it."""

    repo: str
    commit: str
    patterns: tuple[str, ...]


@dataclass(frozen=True)
class Leaf:
    """A valid qna.yaml, parsed. `name` is its folder in the taxonomy
    (`knowledge/computing/systemd`): InstructLab's leaf node, and a stable key."""

    kind: Kind
    path: Path
    name: str
    version: int
    created_by: str
    seed_examples: tuple[SeedExample, ...]
    task_description: str | None = None  # skills
    domain: str | None = None  # knowledge
    document_outline: str | None = None  # knowledge
    document: DocumentRef | None = None  # knowledge

    @property
    def task(self) -> str:
        """What generation prompts with: a skill's task description, a knowledge leaf's
        domain and outline."""
        if self.kind == "skill":
            return self.task_description or ""
        return f"{self.domain}: {self.document_outline}" if self.document_outline else ""

    @property
    def grounded(self) -> bool:
        return any(example.context for example in self.seed_examples)

    def examples(self) -> Iterator[tuple[str | None, QnA]]:
        """Every question/answer pair with the context it belongs to."""
        for example in self.seed_examples:
            for pair in example.pairs:
                yield example.context, pair


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int
    field: str  # `seed_examples[2].questions_and_answers[0].answer`; empty for the file
    message: str
    severity: Severity = "error"

    def render(self) -> str:
        where = f"{self.path}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )

    def as_json(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "line": self.line,
            "field": self.field,
            "message": self.message,
            "severity": self.severity,
        }


@dataclass
class Report:
    """One check: the files looked at, the leaves that are valid, every problem found."""

    root: Path
    files: list[Path] = field(default_factory=list)
    leaves: list[Leaf] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def invalid_files(self) -> list[Path]:
        return sorted({p.path for p in self.errors})

    def summary(self) -> str:
        counts = f"{_count(len(self.errors), 'error')}, {_count(len(self.warnings), 'warning')}"
        checked = _count(len(self.files), "leaf", "leaves")
        if self.errors:
            return f"{len(self.invalid_files)} of {checked} invalid ({counts})"
        return f"{checked} valid ({counts})" if self.files else f"no leaves ({counts})"


def _count(number: int, one: str, many: str | None = None) -> str:
    return f"{number} {one if number == 1 else (many or one + 's')}"
