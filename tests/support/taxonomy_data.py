"""A taxonomy for tests: `bootlab taxonomy init`'s two leaves, the knowledge leaf's document
in a real git repository (made here) at a real commit."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def taxonomy_with_documents(root: Path, rules: int = 20) -> Path:
    """The taxonomy under `root`; its document holds `rules` paragraphs."""
    from bootlab.taxonomy.init import KNOWLEDGE_LEAF, init

    docs = root / "policies"
    docs.mkdir(parents=True)
    git("init", "-q", cwd=docs)
    (docs / "travel_expenses.md").write_text(
        "# Travel expenses\n\n"
        + "\n\n".join(
            f"Rule {i}: employees file receipts for category {i} within {i + 10} days."
            for i in range(rules)
        )
    )
    git("add", ".", cwd=docs)
    git("commit", "-q", "-m", "policies", cwd=docs)
    commit = git("rev-parse", "HEAD", cwd=docs)
    tree = root / "taxonomy"
    init(tree)
    leaf = tree / KNOWLEDGE_LEAF
    leaf.write_text(
        leaf.read_text()
        .replace("https://git.example.com/example-corp/policies.git", str(docs))
        .replace("0" * 40, commit)
    )
    return tree
