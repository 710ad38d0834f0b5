"""`bootlab taxonomy ...`: InstructLab taxonomies, local files read in this process as the
user running it (no daemon); the taxonomy modules load only for these verbs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bootlab.cli.command import Arg, Kind, Shown, command
from bootlab.cli.output import table
from bootlab.errors import Exit
from bootlab.paths import Paths

if TYPE_CHECKING:
    from bootlab.taxonomy import Report


def _problems(report: Report, show_all: bool) -> None:
    from bootlab.taxonomy import MAX_SHOWN  # noqa: PLC0415

    for kind, found in (("error", report.errors), ("warning", report.warnings)):
        shown = found if show_all else found[:MAX_SHOWN]
        for problem in shown:
            print(f"{kind}: {problem.render()}", file=sys.stderr)
        if len(found) > len(shown):
            print(
                f"... and {len(found) - len(shown)} more {kind}s (--all shows them)",
                file=sys.stderr,
            )


def _document(report: Report, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "root": str(report.root),
        **(extra or {}),
        "files": [str(path) for path in report.files],
        "leaves": [
            {
                "path": str(leaf.path),
                "name": leaf.name,
                "kind": leaf.kind,
                "version": leaf.version,
                "seed_examples": len(leaf.seed_examples),
            }
            for leaf in report.leaves
        ],
        "errors": [problem.as_json() for problem in report.errors],
        "warnings": [problem.as_json() for problem in report.warnings],
    }


def _verdict(report: Report) -> str:
    """The summary line; with errors it goes to stderr (exit 65)."""
    return f"error: {report.summary()}" if report.errors else report.summary()


def _show_verdict(report: Report) -> None:
    print(_verdict(report), file=sys.stderr if report.errors else sys.stdout)


def _shown(
    report: Report, show: Callable[[Report], None], extra: dict[str, Any] | None = None
) -> Shown[Report]:
    """With --json the summary goes to stderr, so stdout carries only the document."""
    return Shown(
        report,
        show,
        document=_document(report, extra),
        exit_code=Exit.DATA if report.errors else Exit.OK,
        notes=(_verdict(report),),
    )


def cmd_taxonomy_validate(args: argparse.Namespace, paths: Paths) -> Shown[Report]:
    from bootlab import taxonomy  # noqa: PLC0415

    def show(report: Report) -> None:
        _problems(report, args.all)
        _show_verdict(report)

    return _shown(taxonomy.check(Path(args.path)), show)


def cmd_taxonomy_diff(args: argparse.Namespace, paths: Paths) -> Shown[Report]:
    from bootlab import taxonomy  # noqa: PLC0415

    report, found = taxonomy.check_changed(Path(args.path), args.ref)
    changes = [(str(report.root / change.path), change.status) for change in found.changes]

    def show(report: Report) -> None:
        if not changes:
            print(
                f"no new or changed leaves against {found.base}" if found.compared else "no leaves"
            )
            return
        print(
            f"leaves new or changed against {found.base}:" if found.compared else f"{found.base}:"
        )
        table([[f"  {status}", path] for path, status in changes])
        _problems(report, args.all)
        _show_verdict(report)

    listed = [{"path": path, "status": status} for path, status in changes]
    return _shown(report, show, {"base": found.base, "changes": listed})


def cmd_taxonomy_init(args: argparse.Namespace, paths: Paths) -> int:
    from bootlab.taxonomy import init  # noqa: PLC0415

    target = Path(args.path)
    written, repository = init.init(target)
    print(f"wrote a starting taxonomy in {target}" + (" (a git repository)" if repository else ""))
    for path in written:
        print(f"  {path}")
    print(f"next: edit the leaves, then `bootlab taxonomy diff {target}`")
    return Exit.OK


_WHERE = Arg(
    ("path",),
    nargs="?",
    default=".",
    help="the taxonomy, a folder in it or one qna.yaml (default: .)",
)
_ALL = Arg(("--all",), action="store_true", help="show every problem, not the first 20")

NOUNS = {"taxonomy": "InstructLab taxonomies (qna.yaml leaves), checked locally"}

COMMANDS = (
    command(
        "taxonomy init",
        "Write a starting taxonomy: a git repository with a knowledge and a skill example",
        cmd_taxonomy_init,
        replace(_WHERE, default="taxonomy", help="a new folder (default: taxonomy)"),
        kind=Kind.LOCAL,
    ),
    command(
        "taxonomy validate",
        "Check every leaf: errors with file:line and field (exit 65 when any)",
        cmd_taxonomy_validate,
        _WHERE,
        _ALL,
        kind=Kind.LOCAL,
        json=True,
    ),
    command(
        "taxonomy diff",
        "List the leaves new or changed against a git ref, and untracked ones; check them",
        cmd_taxonomy_diff,
        Arg(("--ref",), help="branch, tag or commit (default: main, master, else HEAD)"),
        _WHERE,
        _ALL,
        kind=Kind.LOCAL,
        json=True,
    ),
)
