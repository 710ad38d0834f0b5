"""`bootlab data ...`: training datasets, imported, listed and generated through bootlabd."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bootlab.cli.calls import ask, follow
from bootlab.cli.command import NAME, Arg, OneOf, Shown, command
from bootlab.cli.output import ago, table
from bootlab.errors import Exit, die
from bootlab.paths import Paths

if TYPE_CHECKING:
    from bootlab.api import DatasetList, DatasetView, Job


def _dataset_table(found: Sequence[DatasetView]) -> None:
    table(
        [
            [
                d.name,
                str(d.samples),
                str(d.longest_tokens),
                ago(d.imported_at),
                d.source,
            ]
            for d in found
        ],
        header=["NAME", "SAMPLES", "LONGEST (≈TOKENS)", "IMPORTED", "SOURCE"],
    )


def cmd_data_import(args: argparse.Namespace, paths: Paths) -> Shown[DatasetView]:
    from bootlab.cli.upload import upload  # noqa: PLC0415
    from bootlab.store.layout import check_name  # noqa: PLC0415

    origin = os.path.abspath(args.path)
    check_name(args.name or Path(origin).stem)  # before the upload, not after it
    if os.path.isdir(origin):
        raise die(f"{origin} is a directory, not a JSONL file", exit_code=Exit.USAGE)
    sent = upload(paths, Path(origin).resolve(), origin=origin, quiet=args.json)
    body = {"upload": sent.id, "name": args.name, "context": args.context}
    dataset: DatasetView = ask(paths, "POST", "/v1/datasets/import", body)
    return Shown(dataset, lambda d: print(f"{d.name}: {d.samples} samples, valid"))


def cmd_data_list(args: argparse.Namespace, paths: Paths) -> Shown[list[DatasetView]]:
    listing: DatasetList = ask(paths, "GET", "/v1/datasets")
    return Shown(listing.datasets, _show_list)


def _show_list(found: list[DatasetView]) -> None:
    if found:
        _dataset_table(found)
    else:
        print("no datasets yet (bootlab data import FILE.jsonl)")


def cmd_data_generate(args: argparse.Namespace, paths: Paths) -> Shown[list[DatasetView] | None]:
    from bootlab.apikey import read_api_key  # noqa: PLC0415
    from bootlab.store.layout import check_name  # noqa: PLC0415

    check_name(args.name)  # before the upload, not after it
    key = None
    if args.api_key_file:  # read here, as the caller: the daemon opens none of their files
        key = read_api_key(args.api_key_file, setting="--api-key-file", exit_code=Exit.USAGE)
    quiet = args.quiet or args.json
    upload_id, inside = _upload_taxonomy(paths, Path(args.taxonomy), args.all, quiet)
    body = {
        "upload": upload_id,
        "taxonomy": inside,
        "name": args.name,
        "ref": args.ref,
        "all": args.all,
        "endpoint": args.endpoint,
        "model": args.model,
        "api_key": key,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "judge": args.judge,
    }
    job: Job = ask(paths, "POST", "/v1/datasets/generate", {k: v for k, v in body.items() if v})
    job = follow(paths, job, quiet)
    return Shown(job.datasets, lambda made: _dataset_table(made or []))


def _upload_taxonomy(paths: Paths, given: Path, every_leaf: bool, quiet: bool) -> tuple[str, str]:
    """Send the taxonomy `given` is in: its top folders, and unless every leaf is wanted, the
    git repository holding it (whose diff picks the changed leaves; bootlabd runs git on its
    own copy, so no repository of someone else's is read by root). Returns the upload's id
    and where `given` is in it."""
    from bootlab.cli.upload import upload  # noqa: PLC0415
    from bootlab.taxonomy.model import TOP_FOLDERS  # noqa: PLC0415
    from bootlab.taxonomy.validate import find_root  # noqa: PLC0415

    given = given.resolve()
    root = find_root(given)
    base = root
    only = [top for top in TOP_FOLDERS if (root / top).is_dir()]
    if not every_leaf:
        top = next((d for d in (root, *root.parents) if (d / ".git").exists()), None)
        if top is not None and not (top / ".git").is_dir():
            raise die(
                f"{top} is a git worktree or submodule (its .git is a file): bootlab sends a "
                "repository with its own .git folder only",
                hint="generate from a clone of it, or pass --all (every leaf)",
                exit_code=Exit.USAGE,
            )
        if top is not None:
            base = top
            inside = root.relative_to(top)
            ignores = [p / ".gitignore" for p in (inside, *inside.parents)]
            only = [".git", *(str(p) for p in ignores), *(str(inside / t) for t in only)]
    if given.is_file():
        only.append(str(given.relative_to(base)))
    sent = upload(paths, base, origin=str(base), quiet=quiet, only=only)
    return sent.id, os.path.relpath(given, base)


def cmd_data_inspect(args: argparse.Namespace, paths: Paths) -> Shown[DatasetView]:
    dataset: DatasetView = ask(paths, "GET", f"/v1/datasets/{args.name}")
    return Shown(dataset, lambda d: _dataset_table([d]))


NOUNS = {"data": "Training datasets"}

COMMANDS = (
    command(
        "data import",
        "Validate a messages JSONL file, then keep it",
        cmd_data_import,
        Arg(("path",)),
        Arg(("--name",), help="default: the file's name"),
        Arg(("--context",), type=int, help="refuse samples longer than this many tokens (roughly)"),
        json=True,
    ),
    command("data list", "Datasets kept", cmd_data_list, json=True),
    command("data inspect", "One dataset", cmd_data_inspect, NAME, json=True),
    command(
        "data generate",
        "Synthetic training data from a taxonomy, through a teacher model",
        cmd_data_generate,
        Arg(("taxonomy",), nargs="?", default=".", help="default: this directory"),
        Arg(("--name",), required=True, help="datasets NAME-knowledge, NAME-skills"),
        OneOf(
            (
                Arg(("--ref",), help="leaves changed against this git ref (default: main)"),
                Arg(("--all",), action="store_true", help="every leaf, changed or not"),
            )
        ),
        Arg(("--endpoint",), help="an OpenAI API base URL (default: what is served)"),
        Arg(("--model",), help="the teacher's model name at --endpoint"),
        Arg(("--api-key-file",), help="the endpoint's API key"),
        Arg(("--concurrency",), type=int, default=8, help="requests at once"),
        Arg(("--rounds",), type=int, default=2, help="requests a skill or chunk"),
        Arg(("--judge",), action="store_true", help="drop pairs the teacher scores low"),
        Arg(("-q", "--quiet"), action="store_true", help="no progress bar"),
        json=True,
    ),
)
