"""Taxonomy leaves as generation needs them: seed examples flattened to question/answer
pairs, and a knowledge leaf's documents read from its git repository at its commit
(cloned once into the run directory, so a resumed run reads the same text offline)."""

from __future__ import annotations

import shutil
from pathlib import Path

from bootlab import taxonomy
from bootlab.errors import Exit, die
from bootlab.run import run
from bootlab.sdg.generate import Example, Leaf

READABLE = (".md", ".markdown", ".txt", ".rst")


def from_taxonomy(leaves: list[taxonomy.Leaf], cache: Path) -> list[Leaf]:
    found = []
    for leaf in leaves:
        examples = tuple(
            Example(pair.question, pair.answer, seed.context)
            for seed in leaf.seed_examples
            for pair in seed.pairs
        )
        if leaf.kind == "knowledge":
            assert leaf.document is not None  # validation requires it
            found.append(
                Leaf(
                    path=leaf.name,
                    kind="knowledge",
                    task=leaf.domain or leaf.name,
                    examples=examples,
                    documents=documents(leaf.document, cache, leaf.path),
                )
            )
        else:
            found.append(
                Leaf(
                    path=leaf.name,
                    kind="skill",
                    task=leaf.task_description or leaf.name,
                    examples=examples,
                )
            )
    return found


def documents(reference: taxonomy.DocumentRef, cache: Path, leaf: Path) -> tuple[str, ...]:
    checkout = cache / reference.commit
    if not (checkout / ".bootlab-complete").exists():
        partial = checkout.with_name(f"{reference.commit}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        what = f"fetching the documents of {leaf} ({reference.repo} at {reference.commit})"
        run(
            ["git", "clone", "--quiet", "--no-checkout", reference.repo, str(partial)],
            capture=True,
            timeout=600,
            what=what,
        )
        run(
            ["git", "-C", str(partial), "checkout", "--quiet", reference.commit],
            capture=True,
            timeout=600,
            what=what,
        )
        (partial / ".bootlab-complete").touch()
        shutil.rmtree(checkout, ignore_errors=True)
        partial.rename(checkout)
    texts = []
    for pattern in reference.patterns:
        matched = sorted(p for p in checkout.glob(pattern) if p.is_file())
        if not matched:
            raise die(
                f"{leaf}: document pattern '{pattern}' matches nothing in {reference.repo} "
                f"at {reference.commit}",
                hint="fix document.patterns (or document.commit) in the qna.yaml",
                exit_code=Exit.DATA,
            )
        for path in matched:
            if path.suffix.lower() not in READABLE:
                raise die(
                    f"{leaf}: {path.name} is not a text document (Markdown or plain text)",
                    hint="convert it to Markdown; PDF is not read yet",
                    exit_code=Exit.DATA,
                )
            texts.append(path.read_text(errors="replace"))
    return tuple(texts)
