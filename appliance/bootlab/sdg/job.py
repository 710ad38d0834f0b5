"""`bootlab data generate` as the daemon runs it: the teacher (the endpoint asked for, or the
model bootlab-serve serves now), the taxonomy's leaves (in the tree the CLI uploaded, git
history included, so git reads root's own files), and the work that turns them into datasets
NAME-knowledge and NAME-skills."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bootlab import config, datasets
from bootlab.apikey import read_api_key
from bootlab.errors import Exit, die
from bootlab.paths import Paths
from bootlab.sdg import generate as sdg
from bootlab.sdg.sources import from_taxonomy
from bootlab.sdg.teacher import Teacher
from bootlab.store.fetch import Progress
from bootlab.workload import state

Work = Callable[[Progress], list[datasets.Dataset]]


def teacher(paths: Paths, endpoint: str | None, model: str | None, key: str | None) -> Teacher:
    """The endpoint asked for, or the model bootlab-serve serves now; with the key the
    client read (--api-key-file), else for what is served serve.api_key_file's."""
    settings = config.load(paths)
    if key is None and not endpoint and settings.serve.api_key_file:
        key = read_api_key(
            settings.serve.api_key_file, setting="serve.api_key_file", exit_code=Exit.USAGE
        )
    if endpoint:
        if not model:
            raise die("--endpoint needs --model: the teacher's model name", exit_code=Exit.USAGE)
        return Teacher(endpoint, model, key)
    served = state.serving(paths)
    if served is None:
        raise die(
            "no teacher: nothing is being served",
            hint="serve the teacher (`bootlab serve start MODEL`), or give --endpoint URL "
            "--model NAME",
            exit_code=Exit.NOT_CONFIGURED,
        )
    return Teacher(served.endpoint, model or served.model, key)


def plan(
    paths: Paths,
    name: str,
    source: Path,
    teacher: Teacher,
    *,
    ref: str | None,
    every_leaf: bool,
    settings: sdg.Settings,
) -> tuple[str, Work]:
    """What the job is (for its listing) and its work, once there are leaves to generate
    from: those changed against `ref`, or every one."""
    from bootlab import taxonomy  # noqa: PLC0415 - jsonschema and friends, only here

    found = taxonomy.leaves(source, ref, changed_only=not every_leaf)
    if not found:
        raise die(
            f"no leaves to generate from in {source} (none changed"
            + (f" against {ref})" if ref else ")"),
            hint="change or add a qna.yaml, or pass --all for every leaf",
            exit_code=Exit.DATA,
        )
    run_dir = paths.state / "sdg" / name

    def work(progress: Progress) -> list[datasets.Dataset]:
        leaves = from_taxonomy(found, run_dir / "documents")
        outcome = sdg.generate(leaves, teacher, run_dir, settings, progress=progress)
        sdg.check(outcome, run_dir)
        made = []
        for path, suffix in ((outcome.knowledge, "knowledge"), (outcome.skills, "skills")):
            if path is not None:
                made.append(datasets.import_file(paths.state, path, f"{name}-{suffix}"))
        return made

    return f"{source} as {name}", work
