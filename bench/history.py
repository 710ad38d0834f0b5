"""The benches' results across runs, kept outside the clone (the bootlab cache:
${BOOTLAB_CACHE:-~/.cache/bootlab}/bench-history.jsonl), so that a regression shows in the
run that caused it and not only once someone compares by hand.

    python -m bench.history add NAME < RESULT.json   # a bench's JSON line, with commit and date
    python -m bench.history table [--last N]         # each bench's figures, its last N runs
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from image.cache import cache_dir

ROOT = Path(__file__).resolve().parent.parent
NAME = "bench-history.jsonl"


def history() -> Path:
    return cache_dir() / NAME


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip()


def add(name: str, line: str) -> dict[str, Any]:
    """Append one bench's result (its JSON line) with the commit it measured and the date."""
    entry = {
        "bench": name,
        "commit": _git("rev-parse", "--short=9", "HEAD") or "unknown",
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "result": json.loads(line),
    }
    with history().open("a") as file:  # one line an entry: appends never mix
        file.write(json.dumps(entry) + "\n")
    return entry


def entries() -> list[dict[str, Any]]:
    path = history()
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:  # a line cut by a full disk or a kill: the rest still counts
            continue
    return found


def _cell(value: object) -> str | None:
    """A figure as the table shows it; None for what is not one (goals, names, lists of
    times)."""
    if isinstance(value, bool) or value is None:
        return None if value is None else str(value).lower()
    if isinstance(value, int | float):
        return f"{value:g}"
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        return f"{value[0]:g}..{value[1]:g}"
    return None


def table(last: int = 5) -> str:
    """Each bench's figures (rows) over its last runs (columns, newest right)."""
    benches: dict[str, list[dict[str, Any]]] = {}
    for entry in entries():
        benches.setdefault(str(entry.get("bench")), []).append(entry)
    blocks = []
    for name, every in benches.items():
        runs = every[-last:]
        heads = [
            f"{run['date'][5:16].replace('T', ' ')} {run['commit'][:7]}" + "*" * run["dirty"]
            for run in runs
        ]
        figures: list[str] = []
        for run in runs:
            for key, value in run["result"].items():
                if key not in figures and _cell(value) is not None:
                    figures.append(key)
        rows = [["", *heads]]
        rows += [[key, *(_cell(run["result"].get(key)) or "" for run in runs)] for key in figures]
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
        lines = [
            "  ".join(
                cell.ljust(width) if column == 0 else cell.rjust(width)
                for column, (cell, width) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
            for row in rows
        ]
        blocks.append(f"{name} (last {len(runs)} runs, newest right; * uncommitted changes)")
        blocks.extend("  " + line for line in lines)
    return "\n".join(blocks) if blocks else f"no bench history in {history()} yet"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    adding = verbs.add_parser("add", help="append a bench's JSON line (stdin)")
    adding.add_argument("name")
    showing = verbs.add_parser("table", help="the last runs of each figure")
    showing.add_argument("--last", type=int, default=5)
    args = parser.parse_args()
    if args.verb == "add":
        lines = sys.stdin.read().strip().splitlines()
        if not lines:
            sys.exit(f"no result for {args.name} on stdin")
        add(args.name, lines[-1])
    else:
        print(table(args.last))


if __name__ == "__main__":
    main()
