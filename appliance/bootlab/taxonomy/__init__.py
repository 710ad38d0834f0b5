"""InstructLab taxonomies: trees of qna.yaml leaves (knowledge/, compositional_skills/,
foundational_skills/), checked the way `ilab taxonomy diff` checks them and then some.

- `schema`: the structure, with InstructLab's own JSON schemas (instructlab-schema);
- `rules`: lint, versions, lengths, repeated questions, document references;
- `validate`: the tree's layout and each file, every problem with file:line and field;
- `diff`: leaves new or changed against a git ref, and untracked ones;
- `init`: a starting taxonomy.

`leaves()` is what later steps (synthetic data generation) call: the valid, parsed leaves,
or one error listing every problem."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bootlab.errors import Exit, die
from bootlab.taxonomy.model import (
    TOP_FOLDERS,
    DocumentRef,
    Leaf,
    Problem,
    QnA,
    Report,
    SeedExample,
)

if TYPE_CHECKING:
    from bootlab.taxonomy.diff import Changes

__all__ = [
    "TOP_FOLDERS",
    "DocumentRef",
    "Exit.DATA",
    "Leaf",
    "Problem",
    "QnA",
    "Report",
    "SeedExample",
    "check",
    "check_changed",
    "leaves",
]

MAX_SHOWN = 20


def check(path: Path) -> Report:
    """Every taxonomy file under `path` (or the one file `path` names)."""
    from bootlab.taxonomy import validate  # noqa: PLC0415 - jsonschema only when checking

    return validate.check(path)


def check_changed(path: Path, ref: str | None = None) -> tuple[Report, Changes]:
    """The files new or changed against `ref` (see `diff.changes`), checked. Returns the
    report and the changes (each file's status: added, modified, untracked)."""
    from bootlab.taxonomy import diff, validate  # noqa: PLC0415

    root = validate.find_root(path)
    found = diff.changes(root, ref)
    return validate.check(root, only=[change.path for change in found.changes]), found


def leaves(path: Path, ref: str | None = None, *, changed_only: bool = False) -> list[Leaf]:
    """The valid leaves of the taxonomy at `path`: all of them, or those new or changed
    against `ref` when it is given or `changed_only` (default ref: main, master, else HEAD).
    Any error in them raises one error listing the problems (exit 65); warnings do not."""
    if changed_only or ref is not None:
        report, _ = check_changed(path, ref)
    else:
        report = check(path)
    errors = report.errors
    if errors:
        shown = [problem.render() for problem in errors[:MAX_SHOWN]]
        if len(errors) > MAX_SHOWN:
            shown.append(f"... and {len(errors) - MAX_SHOWN} more")
        raise die(
            f"the taxonomy at {report.root} is invalid: {report.summary()}\n  "
            + "\n  ".join(shown),
            hint=f"bootlab taxonomy validate {report.root}",
            exit_code=Exit.DATA,
        )
    return report.leaves
