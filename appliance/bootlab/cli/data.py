"""`bootlab data ...`: training datasets, imported, listed and generated through bootlabd."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bootlab.cli.calls import ask, follow
from bootlab.cli.command import NAME, Arg, OneOf, Shown, command
from bootlab.cli.output import ago, table
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
    body = {"path": os.path.abspath(args.path), "name": args.name, "context": args.context}
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
    body = {
        "taxonomy": os.path.abspath(args.taxonomy),
        "name": args.name,
        "ref": args.ref,
        "all": args.all,
        "endpoint": args.endpoint,
        "model": args.model,
        "api_key_file": os.path.abspath(args.api_key_file) if args.api_key_file else None,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "judge": args.judge,
    }
    job: Job = ask(paths, "POST", "/v1/datasets/generate", {k: v for k, v in body.items() if v})
    job = follow(paths, job, args.quiet or args.json)
    return Shown(job.datasets, lambda made: _dataset_table(made or []))


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
