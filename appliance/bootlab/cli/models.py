"""`bootlab model ...`: the model store (through bootlabd), and `model evaluate`, which runs
here in the ML venv as the admin's own job."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from bootlab import text
from bootlab.cli.calls import ask, follow
from bootlab.cli.command import NAME, TLS_VERIFY, Arg, Kind, OneOf, Shown, command
from bootlab.cli.output import ago, table
from bootlab.errors import Exit, die
from bootlab.paths import Paths

if TYPE_CHECKING:
    from bootlab.api import GcResult, Job, Model, ModelList, VerifyResult
    from bootlab.evaluate.run import Result


def _model_table(models: Sequence[Model]) -> None:
    table(
        [
            [
                m.name,
                text.size(m.size),
                str(len(m.files)),
                ago(m.pulled_at),
                m.source,
            ]
            for m in models
        ],
        header=["NAME", "SIZE", "FILES", "PULLED", "SOURCE"],
    )


def cmd_model_list(args: argparse.Namespace, paths: Paths) -> Shown[ModelList]:
    listing: ModelList = ask(paths, "GET", "/v1/models")
    return Shown(listing, _show_list)


def _show_list(listing: ModelList) -> None:
    if listing.models:
        _model_table(listing.models)
        print(f"store: {text.size(listing.store_bytes)} on disk")
    else:
        print("no models yet (bootlab model pull REFERENCE)")


def cmd_model_pull(args: argparse.Namespace, paths: Paths) -> Shown[Job]:
    reference = args.reference
    body = {"reference": reference, "name": args.name, "tls_verify": args.tls_verify}
    if "://" not in reference or reference.startswith("file://"):
        body = {"upload": _upload_model(args, paths), "name": args.name}
    job = follow(paths, ask(paths, "POST", "/v1/models/pull", body), args.json)
    return Shown(job, _show_pulled)


def _upload_model(args: argparse.Namespace, paths: Paths) -> str:
    """A local model, sent to bootlabd as read here (see cli/upload.py): its upload's id."""
    from bootlab.cli.upload import upload  # noqa: PLC0415
    from bootlab.store.layout import check_name  # noqa: PLC0415

    if args.name is not None:
        check_name(args.name)  # before the upload, not after it
    text = args.reference.removeprefix("file://")
    if not os.path.lexists(text):
        raise die(
            f"'{args.reference}' is neither a model reference nor a path that exists",
            hint="use docker://REGISTRY/REPO:TAG, oci://..., hf://ORG/REPO[@REV], or a "
            "local directory or file",
            exit_code=Exit.USAGE,
        )
    root = Path(text).resolve()
    if len(root.parts) <= 2 and root.is_dir():
        raise die(
            f"refusing to import {root}: that is a system directory, not a model",
            hint="give the model's own directory",
            exit_code=Exit.USAGE,
        )
    return upload(paths, root, origin=str(root), quiet=args.json).id


def _show_pulled(job: Job) -> None:
    model = job.model
    if model is not None:
        print(
            f"{model.name}: {text.size(model.size)} in {model.path} "
            f"({text.size(job.fetched)} downloaded)"
        )


def cmd_model_push(args: argparse.Namespace, paths: Paths) -> Shown[Job]:
    body = {"name": args.name, "reference": args.reference, "tls_verify": args.tls_verify}
    job = follow(paths, ask(paths, "POST", "/v1/models/push", body), args.json)
    return Shown(job, lambda _: print(f"pushed {args.name} to {args.reference}"))


def cmd_model_inspect(args: argparse.Namespace, paths: Paths) -> Shown[Model]:
    model: Model = ask(paths, "GET", f"/v1/models/{args.name}")
    return Shown(model, _show_model)


def _show_model(model: Model) -> None:
    table(
        [
            ["name:", model.name],
            ["path:", model.path],
            ["source:", model.source],
            ["manifest:", model.manifest or "-"],
            ["size:", text.size(model.size)],
        ]
    )
    print()
    table(
        [[f.path, text.size(f.size), f.digest[:19]] for f in model.files],
        header=["FILE", "SIZE", "DIGEST"],
    )


def cmd_model_verify(args: argparse.Namespace, paths: Paths) -> Shown[VerifyResult]:
    result: VerifyResult = ask(paths, "POST", f"/v1/models/{args.name}/verify")
    problems = tuple(f"{args.name}: {problem}" for problem in result.problems)

    def show(verified: VerifyResult) -> None:
        for problem in problems:
            print(problem, file=sys.stderr)
        if verified.ok:
            print(f"{args.name}: every file matches its digest")

    exit_code = Exit.OK if result.ok else Exit.CORRUPT
    return Shown(result, show, exit_code=exit_code, notes=problems)


def cmd_model_remove(args: argparse.Namespace, paths: Paths) -> Shown[Model]:
    model: Model = ask(paths, "POST", f"/v1/models/{args.name}/remove")
    return Shown(model, lambda m: print(f"removed {m.name} (`bootlab model gc` frees its space)"))


def cmd_model_gc(args: argparse.Namespace, paths: Paths) -> Shown[GcResult]:
    result: GcResult = ask(paths, "POST", "/v1/models/gc")
    return Shown(result, _show_gc)


def _show_gc(result: GcResult) -> None:
    print(
        f"freed {text.size(result.bytes_freed)}: {result.blobs} blobs, "
        f"{result.snapshots} snapshots, {result.partials} partial downloads"
    )


def cmd_model_evaluate(args: argparse.Namespace, paths: Paths) -> Shown[list[Result]]:
    """Runs here, not in the daemon: it loads the model in the ML venv like any job of the
    admin's, reading the store (group-readable) and the admin's own files."""
    from bootlab import config  # noqa: PLC0415
    from bootlab.evaluate import run, tasks  # noqa: PLC0415
    from bootlab.sdg.teacher import Teacher  # noqa: PLC0415
    from bootlab.workload import launch  # noqa: PLC0415

    settings = config.load(paths)
    python = launch.ml_python(paths, "transformers", "the evaluation stack (transformers)")
    if args.tasks:
        kind, items = tasks.load(Path(args.tasks))
        benchmark = args.tasks
    else:
        from bootlab import taxonomy  # noqa: PLC0415

        kind = "judged"
        items = [
            tasks.Judged(pair.question, pair.answer)
            for leaf in taxonomy.leaves(Path(args.taxonomy))
            for seed in leaf.seed_examples
            for pair in seed.pairs
        ]
        benchmark = f"taxonomy {args.taxonomy}"
    judge = None
    if args.judge_endpoint:
        if not args.judge_model:
            raise die("--judge-endpoint needs --judge-model", exit_code=Exit.USAGE)
        judge = Teacher(args.judge_endpoint, args.judge_model)
    elif kind == "judged":
        served = ask(paths, "GET", "/v1/services/serve")
        judge = run.served_judge(served, settings.serve.api_key_file)
    results = []
    for name in [args.name, *([args.against] if args.against else [])]:
        # A name from the store, or a directory such as a training checkpoint's candidate.
        model = (
            Path(name)
            if os.path.isabs(name) and Path(name, "config.json").is_file()
            else launch.store_model(settings, paths, name, "the model", "evaluate")
        )
        results.append(
            run.evaluate(
                python,
                model.resolve(),
                name,
                benchmark=benchmark,
                kind=kind,
                items=items,
                judge=judge,
                max_new_tokens=args.max_new_tokens,
            )
        )
    document = [result.to_json() for result in results]
    return Shown(results, lambda found: print(run.table(found)), document=document)


REFERENCE = Arg(("reference",))

NOUNS = {"model": "The model store"}

COMMANDS = (
    command(
        "model evaluate",
        "Score a model (or compare two) on a benchmark file or a taxonomy's questions",
        cmd_model_evaluate,
        replace(NAME, help="a model from the store, or a checkpoint's directory"),
        Arg(("--against",), metavar="MODEL", help="compare with this model"),
        OneOf(
            (
                Arg(("--tasks",), metavar="FILE", help="a benchmark JSONL file"),
                Arg(("--taxonomy",), metavar="PATH", help="the taxonomy's seed questions"),
            ),
            required=True,
        ),
        Arg(("--judge-endpoint",), help="OpenAI API base URL"),
        Arg(("--judge-model",), help="the judge's model name"),
        Arg(("--max-new-tokens",), type=int, default=256),
        kind=Kind.LOCAL,
        json=True,
    ),
    command(
        "model pull",
        "Pull docker://, oci://, hf://ORG/REPO[@REV], or a local path (sent as you read it)",
        cmd_model_pull,
        REFERENCE,
        Arg(("--name",), help="the model's name in the store (default: from REFERENCE)"),
        TLS_VERIFY,
        json=True,
    ),
    command(
        "model push",
        "Push a model as an OCI artifact",
        cmd_model_push,
        NAME,
        replace(REFERENCE, help="docker://REGISTRY/REPOSITORY:TAG"),
        TLS_VERIFY,
        json=True,
    ),
    command("model list", "Models in the store", cmd_model_list, json=True),
    command("model inspect", "A model, file by file", cmd_model_inspect, NAME, json=True),
    command(
        "model verify", "Re-hash its files against their digests", cmd_model_verify, NAME, json=True
    ),
    command("model remove", "Remove a model's name", cmd_model_remove, NAME, json=True),
    command("model gc", "Free blobs and downloads no model uses", cmd_model_gc, json=True),
)
