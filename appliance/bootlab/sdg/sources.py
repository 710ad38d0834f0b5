"""Taxonomy leaves as generation needs them: seed examples flattened to question/answer
pairs, and a knowledge leaf's documents read from its git repository at its commit
(cloned once into the run directory, so a resumed run reads the same text offline)."""

from __future__ import annotations

from pathlib import Path

from bootlab import files, taxonomy
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
        texts: tuple[str, ...] = ()
        if leaf.kind == "knowledge":
            assert leaf.document is not None  # validation requires it
            texts = documents(leaf.document, cache, leaf.path)
        # A knowledge leaf's task is its domain; a skill's, its task description.
        task = (leaf.domain if leaf.kind == "knowledge" else leaf.task_description) or leaf.name
        found.append(Leaf(leaf.name, leaf.kind, task, examples, texts))
    return found


def documents(reference: taxonomy.DocumentRef, cache: Path, leaf: Path) -> tuple[str, ...]:
    checkout = cache / reference.commit
    if not (checkout / ".bootlab-complete").exists():
        what = f"fetching the documents of {leaf} ({reference.repo} at {reference.commit})"
        with files.cache_entry(checkout, marker=".bootlab-complete") as partial:
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
