"""The `bootlab` command line: the admin's one entry point inside the appliance.

Read commands and actions go to bootlabd over its socket (the CLI is only a client); the
entrypoints systemd runs (`serve run`, `train run`, `upgrade check`) work locally. Imports
stay light on the client path: `bootlab status` must answer quickly."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bootlab import __version__, text
from bootlab.errors import BootlabError, Exit, die
from bootlab.paths import Paths

Command = Callable[[argparse.Namespace, Paths], int]


def _api(paths: Paths, method: str, path: str, body: Any = None) -> Any:
    from bootlab import client  # noqa: PLC0415 - the entrypoints never need it

    socket_path = os.environ.get("BOOTLAB_SOCKET")
    return client.call(paths.socket if not socket_path else _path(socket_path), method, path, body)


def _path(text: str) -> Any:
    from pathlib import Path  # noqa: PLC0415

    return Path(text)


def _print_json(document: Any) -> None:
    print(json.dumps(document, indent=2))


def _table(rows: Sequence[Sequence[str]], header: Sequence[str] | None = None) -> None:
    everything = [list(header)] if header else []
    everything += [list(row) for row in rows]
    if not everything:
        return
    widths = [max(len(row[i]) for row in everything) for i in range(len(everything[0]))]
    for row in everything:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())


def _ago(stamp: float | None) -> str:
    if not stamp:
        return "never"
    seconds = max(0, int(time.time() - stamp))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _service_line(state: dict[str, Any]) -> list[str]:
    detail = f"{state['active']} ({state['sub']})"
    if state["main_pid"]:
        detail += f", pid {state['main_pid']}"
    if state["active"] == "failed":
        detail += f", {state['result']}"
    return [state["workload"], detail, f"since {_ago(state['since'])}", state["unit"]]


def _warn(warnings: Sequence[str]) -> None:
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


# Commands ------------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace, paths: Paths) -> int:
    status = _api(paths, "GET", "/v1/status")
    if args.json:
        _print_json(status)
        return Exit.OK
    print(f"bootlab {status['version']} on {status['hostname']} — {status['profile']}")
    _table([_service_line(state) for state in status["services"]])
    upgrade = status["upgrade"]
    if upgrade is None:
        upgrade_text = "not checked yet"
    elif upgrade["available"]:
        upgrade_text = f"update available: {upgrade['message']} — run `bootc upgrade`"
    elif upgrade["available"] is None:
        upgrade_text = f"check failed: {upgrade['message']}"
    else:
        upgrade_text = "up to date"
    if upgrade is not None:
        upgrade_text += f" (checked {_ago(upgrade['checked_at'])})"
    _table(
        [
            ["GPU lock:", status["gpu_holder"] or "free"],
            ["registries:", ", ".join(status["registries"]) or "none (bootlab login REGISTRY)"],
            ["upgrades:", upgrade_text],
            ["config:", f"error: {status['config_error']}" if status["config_error"] else "ok"],
        ]
    )
    _warn(status["warnings"])
    return Exit.OK


def cmd_system_info(args: argparse.Namespace, paths: Paths) -> int:
    info = _api(paths, "GET", "/v1/system/info")
    if args.json:
        _print_json(info)
        return Exit.OK
    gib = 1024**3
    _table(
        [
            ["profile:", info["profile"]["name"]],
            ["host:", f"{info['hostname']} — {info['os']}, kernel {info['kernel']}"],
            ["cpu:", f"{info['cpu_count']} x {info['cpu_model']}"],
            [
                "memory:",
                f"{info['memory_total_mib'] / 1024:.1f} GiB "
                f"({info['memory_available_mib'] / 1024:.1f} GiB available)",
            ],
            [
                "disk:",
                f"{info['disk_path']}: {info['disk_free_bytes'] / gib:.1f} GiB free of "
                f"{info['disk_total_bytes'] / gib:.1f} GiB",
            ],
        ]
    )
    if info["gpus"]:
        print()
        _table(
            [
                [
                    str(g["index"]),
                    g["vendor"],
                    g["name"],
                    f"{g['memory_mib'] / 1024:.0f} GiB",
                    g.get("driver") or "-",
                ]
                for g in info["gpus"]
            ],
            header=["GPU", "VENDOR", "NAME", "MEMORY", "DRIVER"],
        )
    _warn(info["warnings"])
    return Exit.OK


def cmd_login(args: argparse.Namespace, paths: Paths) -> int:
    interactive = sys.stdin.isatty()
    username = args.username
    if not username:
        if not interactive:
            raise die("no username: pass --username", exit_code=Exit.USAGE)
        username = input("Username: ").strip()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif interactive:
        password = getpass.getpass("Password: ")
    else:
        raise die(
            "no terminal to ask for the password",
            hint="pass it on standard input: ... | bootlab login --password-stdin REGISTRY",
            exit_code=Exit.USAGE,
        )
    if not password:
        raise die("the password is empty", exit_code=Exit.USAGE)
    body = {
        "registry": args.registry,
        "username": username,
        "password": password,
        "tls_verify": args.tls_verify,
    }
    result = _api(paths, "POST", "/v1/auth/login", body)
    _warn(result["warnings"])
    print(f"Login Succeeded: {result['registry']} (for podman and bootc upgrade)")
    return Exit.OK


def cmd_logout(args: argparse.Namespace, paths: Paths) -> int:
    result = _api(paths, "POST", "/v1/auth/logout", {"registry": args.registry})
    if not result["removed_from"]:
        raise die(
            f"not logged in to {result['registry']}",
            hint="bootlab auth status",
            exit_code=Exit.ERROR,
        )
    print(f"Removed login credentials for {result['registry']}")
    return Exit.OK


def cmd_auth_status(args: argparse.Namespace, paths: Paths) -> int:
    status = _api(paths, "GET", "/v1/auth")
    if args.json:
        _print_json(status)
        return Exit.OK
    yes_no = {True: "yes", False: "no"}
    _table(
        [
            [e["registry"], e["username"] or "-", yes_no[e["podman"]], yes_no[e["bootc"]]]
            for e in status["registries"]
        ],
        header=["REGISTRY", "USERNAME", "PODMAN", "BOOTC UPGRADE"],
    )
    if not status["registries"]:
        print("not logged in to any registry (bootlab login REGISTRY)")
    _warn(status["warnings"])
    return Exit.OK


def cmd_config_init(args: argparse.Namespace, paths: Paths) -> int:
    result = _api(paths, "POST", "/v1/config/init", {"force": args.force})
    if result["backup"]:
        print(f"kept the old file as {result['backup']}")
    print(f"wrote {result['path']} for {result['profile']}")
    return Exit.OK


def cmd_config_show(args: argparse.Namespace, paths: Paths) -> int:
    view = _api(paths, "GET", "/v1/config")
    if args.json:
        _print_json(view)
        return Exit.OK
    import yaml  # noqa: PLC0415 - only here

    print(f"# from: {', '.join(view['files']) or 'built-in defaults'}")
    print(yaml.safe_dump(view["config"], sort_keys=False).rstrip())
    return Exit.OK


def cmd_service(args: argparse.Namespace, paths: Paths) -> int:
    workload = args.workload
    if args.action == "status":
        state = _api(paths, "GET", f"/v1/services/{workload}")
    elif args.action == "start":
        from bootlab.workload import request  # noqa: PLC0415

        body = request.body(vars(args), getattr(args, "job", None))
        state = _api(paths, "POST", f"/v1/services/{workload}/start", body)
        if getattr(args, "follow", False):
            state = _follow_training(paths)
    else:
        state = _api(paths, "POST", f"/v1/services/{workload}/{args.action}")
    if args.json:
        _print_json(state)
        return Exit.OK
    _table([_service_line(state)])
    if state.get("endpoint"):
        _table(
            [
                ["model:", state["model"]],
                ["backend:", state["backend"]],
                ["endpoint:", state["endpoint"]],
                ["serving for:", _ago(state["ready_at"]).removesuffix(" ago")],
            ]
        )
    training = state.get("training")
    if training:
        progress = training.get("progress")
        _table(
            [
                ["job:", f"{training['job']} ({training['state']})"],
                ["phases:", ", ".join(training["phases"])],
                ["running on:", training.get("device") or "-"],
                ["progress:", _training_line(progress) if progress else "-"],
                ["result:", f"model {training['output']}"],
            ]
        )
    return Exit.OK


def _training_line(step: dict[str, Any], width: int = 20) -> str:
    fraction = step["step"] / step["steps"] if step["steps"] else 0.0
    bar = "#" * int(fraction * width)
    eta = int(step["eta_s"])
    return (
        f"{step['phase']} ({step['phase_index'] + 1}/{step['phases']}) [{bar:<{width}}] "
        f"step {step['step']}/{step['steps']} loss {step['loss']:.4f} "
        f"{step['tokens_per_s']:.0f} tok/s ETA {eta // 60}m{eta % 60:02d}s"
    )


def _follow_training(paths: Paths) -> dict[str, Any]:
    """Show the job's progress until it ends (done, stopped, or the unit failed)."""
    interactive = sys.stderr.isatty()
    last_line = 0.0
    while True:
        state: dict[str, Any] = _api(paths, "GET", "/v1/services/train")
        training = state.get("training") or {}
        progress = training.get("progress")
        if progress and (interactive or time.monotonic() - last_line > 5):
            end = "" if interactive else "\n"
            print("\r" + _training_line(progress), end=end, file=sys.stderr, flush=True)
            last_line = time.monotonic()
        ended = state["active"] in {"failed", "inactive"}
        if training.get("state") in {"done", "stopped"} or ended:
            if interactive:
                print(file=sys.stderr)
            if state["active"] == "failed":
                raise die(
                    "training failed",
                    hint="see why: journalctl -u bootlab-train -n 50",
                    exit_code=Exit.ERROR,
                )
            return state
        time.sleep(1.0)


def cmd_chat(args: argparse.Namespace, paths: Paths) -> int:
    """Talk to the served model through its OpenAI API, straight to the backend."""
    from bootlab import chat  # noqa: PLC0415

    endpoint, model = args.endpoint, args.model
    if endpoint is None or model is None:
        state = _api(paths, "GET", "/v1/services/serve")
        if not state.get("endpoint"):
            raise die(
                "nothing is being served",
                hint="bootlab serve start [MODEL]",
                exit_code=Exit.CONFLICT,
            )
        endpoint = endpoint or state["endpoint"]
        model = model or state["model"]
    key = chat.api_key(paths)
    if args.query is not None:
        print(
            chat.complete(
                endpoint,
                model,
                [{"role": "user", "content": args.query}],
                key,
                max_tokens=args.max_tokens,
            )
        )
        return Exit.OK
    return chat.interactive(endpoint, model, key, max_tokens=args.max_tokens)


def _progress_line(job: dict[str, Any], width: int = 30) -> str:
    total, done = job["total"], job["done"]
    fraction = done / total if total else 0.0
    bar = "#" * int(fraction * width)
    eta = job["eta_s"]
    eta_text = f"{eta:.0f}s" if eta is not None else "-"
    if job.get("unit") == "requests":
        return (
            f"[{bar:<{width}}] {fraction:4.0%} {done}/{total} requests "
            f"{job['rate_bytes_s']:.2f}/s ETA {eta_text}"
        )
    return (
        f"[{bar:<{width}}] {fraction:4.0%} {text.size(done)}/{text.size(total)} "
        f"{text.size(job['rate_bytes_s'])}/s ETA {eta_text}"
    )


def _follow(paths: Paths, job: dict[str, Any], quiet: bool) -> dict[str, Any]:
    """Poll the job until it ends, drawing a progress bar on a terminal (a line every
    few seconds elsewhere); a failed job becomes its error."""
    interactive = sys.stderr.isatty() and not quiet
    last_line = 0.0
    while job["state"] == "running":
        job = _api(paths, "GET", f"/v1/jobs/{job['id']}/wait")
        if interactive:
            print("\r" + _progress_line(job), end="", file=sys.stderr, flush=True)
        elif not quiet and time.monotonic() - last_line > 5:
            print(_progress_line(job), file=sys.stderr, flush=True)
            last_line = time.monotonic()
    if interactive:
        print("\r" + _progress_line(job), file=sys.stderr)
    if job["state"] == "failed":
        error = job["error"]
        raise BootlabError(error["error"], error.get("hint"), int(error.get("code", 1)))
    return job


def _model_table(models: Sequence[dict[str, Any]]) -> None:
    _table(
        [
            [
                m["name"],
                text.size(m["size"]),
                str(len(m["files"])),
                _ago(m["pulled_at"]),
                m["source"],
            ]
            for m in models
        ],
        header=["NAME", "SIZE", "FILES", "PULLED", "SOURCE"],
    )


def cmd_model_list(args: argparse.Namespace, paths: Paths) -> int:
    listing = _api(paths, "GET", "/v1/models")
    if args.json:
        _print_json(listing)
    elif listing["models"]:
        _model_table(listing["models"])
        print(f"store: {text.size(listing['store_bytes'])} on disk")
    else:
        print("no models yet (bootlab model pull REFERENCE)")
    return Exit.OK


def cmd_model_pull(args: argparse.Namespace, paths: Paths) -> int:
    reference = args.reference
    if "://" not in reference:  # a local path: the daemon's cwd is not ours
        reference = os.path.abspath(reference)
    body = {"reference": reference, "name": args.name, "tls_verify": args.tls_verify}
    job = _follow(paths, _api(paths, "POST", "/v1/models/pull", body), args.json)
    if args.json:
        _print_json(job)
    else:
        model = job["model"]
        print(
            f"{model['name']}: {text.size(model['size'])} in {model['path']} "
            f"({text.size(job['fetched'])} downloaded)"
        )
    return Exit.OK


def cmd_model_push(args: argparse.Namespace, paths: Paths) -> int:
    body = {"name": args.name, "reference": args.reference, "tls_verify": args.tls_verify}
    job = _follow(paths, _api(paths, "POST", "/v1/models/push", body), args.json)
    if args.json:
        _print_json(job)
    else:
        print(f"pushed {args.name} to {args.reference}")
    return Exit.OK


def cmd_model_inspect(args: argparse.Namespace, paths: Paths) -> int:
    model = _api(paths, "GET", f"/v1/models/{args.name}")
    if args.json:
        _print_json(model)
        return Exit.OK
    _table(
        [
            ["name:", model["name"]],
            ["path:", model["path"]],
            ["source:", model["source"]],
            ["manifest:", model["manifest"] or "-"],
            ["size:", text.size(model["size"])],
        ]
    )
    print()
    _table(
        [[f["path"], text.size(f["size"]), f["digest"][:19]] for f in model["files"]],
        header=["FILE", "SIZE", "DIGEST"],
    )
    return Exit.OK


def cmd_model_verify(args: argparse.Namespace, paths: Paths) -> int:
    result = _api(paths, "POST", f"/v1/models/{args.name}/verify")
    if args.json:
        _print_json(result)
    for problem in result["problems"]:
        print(f"{args.name}: {problem}", file=sys.stderr)
    if result["ok"] and not args.json:
        print(f"{args.name}: every file matches its digest")
    return Exit.OK if result["ok"] else Exit.CORRUPT


def cmd_model_remove(args: argparse.Namespace, paths: Paths) -> int:
    model = _api(paths, "POST", f"/v1/models/{args.name}/remove")
    if args.json:
        _print_json(model)
    else:
        print(f"removed {model['name']} (`bootlab model gc` frees its space)")
    return Exit.OK


def cmd_model_gc(args: argparse.Namespace, paths: Paths) -> int:
    result = _api(paths, "POST", "/v1/models/gc")
    if args.json:
        _print_json(result)
    else:
        print(
            f"freed {text.size(result['bytes_freed'])}: {result['blobs']} blobs, "
            f"{result['snapshots']} snapshots, {result['partials']} partial downloads"
        )
    return Exit.OK


def _dataset_table(found: Sequence[dict[str, Any]]) -> None:
    _table(
        [
            [
                d["name"],
                str(d["samples"]),
                str(d["longest_tokens"]),
                _ago(d["imported_at"]),
                d["source"],
            ]
            for d in found
        ],
        header=["NAME", "SAMPLES", "LONGEST (≈TOKENS)", "IMPORTED", "SOURCE"],
    )


def cmd_data_import(args: argparse.Namespace, paths: Paths) -> int:
    body = {"path": os.path.abspath(args.path), "name": args.name, "context": args.context}
    dataset = _api(paths, "POST", "/v1/datasets/import", body)
    if args.json:
        _print_json(dataset)
    else:
        print(f"{dataset['name']}: {dataset['samples']} samples, valid")
    return Exit.OK


def cmd_data_list(args: argparse.Namespace, paths: Paths) -> int:
    found = _api(paths, "GET", "/v1/datasets")["datasets"]
    if args.json:
        _print_json(found)
    elif found:
        _dataset_table(found)
    else:
        print("no datasets yet (bootlab data import FILE.jsonl)")
    return Exit.OK


def cmd_data_generate(args: argparse.Namespace, paths: Paths) -> int:
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
    job = _api(paths, "POST", "/v1/datasets/generate", {k: v for k, v in body.items() if v})
    job = _follow(paths, job, args.quiet or args.json)
    if args.json:
        _print_json(job["datasets"])
    else:
        _dataset_table(job["datasets"])
    return Exit.OK


def cmd_data_inspect(args: argparse.Namespace, paths: Paths) -> int:
    dataset = _api(paths, "GET", f"/v1/datasets/{args.name}")
    if args.json:
        _print_json(dataset)
    else:
        _dataset_table([dataset])
    return Exit.OK


def cmd_workload_run(args: argparse.Namespace, paths: Paths) -> int:
    """The unit's ExecStart: preflight, the GPU lock, then the supervised workload (READY
    once the model answers, or once the training data is checked)."""
    from bootlab.workload import entrypoint  # noqa: PLC0415

    return entrypoint.run(args.workload, paths)


def cmd_gpu_run(args: argparse.Namespace, paths: Paths) -> int:
    """Run a command holding the GPU lock, so bootlab's services cannot start on top of it."""
    from bootlab import gpu_lock  # noqa: PLC0415

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise die("no command to run", hint="bootlab gpu run -- COMMAND ...", exit_code=Exit.USAGE)
    gpu_lock.acquire(paths.gpu_lock, args.holder)
    try:
        os.execvp(command[0], command)  # noqa: S606 - the admin's own command, no shell
    except OSError as error:
        raise die(
            f"cannot run {command[0]}: {error.strerror}", exit_code=Exit.NOT_INSTALLED
        ) from None
    return Exit.OK


def cmd_gpu_cdi(args: argparse.Namespace, paths: Paths) -> int:
    """Regenerate the NVIDIA CDI spec at boot (bootlab-nvidia-cdi.service)."""
    from bootlab.run import run  # noqa: PLC0415

    target = paths.root / "run/cdi/nvidia.yaml"
    run(
        ["nvidia-ctk", "cdi", "generate", f"--output={target}"],
        capture=True,
        timeout=120,
        what="generating the NVIDIA CDI spec",
    )
    print(f"wrote {target}")
    return Exit.OK


def cmd_upgrade_check(args: argparse.Namespace, paths: Paths) -> int:
    from bootlab import upgrade  # noqa: PLC0415

    status = upgrade.check(paths)
    if args.json:
        _print_json(status.model_dump(mode="json"))
    else:
        print(status.message)
    return Exit.OK if status.available is not None else Exit.ERROR


def cmd_completion(args: argparse.Namespace, paths: Paths) -> int:
    from bootlab import completion  # noqa: PLC0415

    print(completion.bash(build_parser()))
    return Exit.OK


# Taxonomy: local files, read in this process as the user running it (no daemon) --------------


def _taxonomy_problems(report: Any, show_all: bool) -> None:
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


def _taxonomy_json(report: Any, extra: dict[str, Any] | None = None) -> None:
    _print_json(
        {
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
    )


def _taxonomy_verdict(report: Any, as_json: bool = False) -> int:
    """65 when any leaf is invalid; the summary (on stderr when stdout carries JSON)."""

    if report.errors:
        print(f"error: {report.summary()}", file=sys.stderr)
        return Exit.DATA
    print(report.summary(), file=sys.stderr if as_json else sys.stdout)
    return Exit.OK


def cmd_taxonomy_init(args: argparse.Namespace, paths: Paths) -> int:
    from bootlab.taxonomy import init  # noqa: PLC0415

    target = _path(args.path)
    written, repository = init.init(target)
    print(f"wrote a starting taxonomy in {target}" + (" (a git repository)" if repository else ""))
    for path in written:
        print(f"  {path}")
    print(f"next: edit the leaves, then `bootlab taxonomy diff {target}`")
    return Exit.OK


def cmd_model_evaluate(args: argparse.Namespace, paths: Paths) -> int:
    """Runs here, not in the daemon: it loads the model in the ML venv like any job of the
    admin's, reading the store (group-readable) and the admin's own files."""
    from bootlab import config  # noqa: PLC0415
    from bootlab.evaluate import run, tasks  # noqa: PLC0415
    from bootlab.sdg.teacher import Teacher  # noqa: PLC0415
    from bootlab.workload import launch  # noqa: PLC0415

    settings = config.load(paths)
    python = launch.ml_python(paths, "transformers", "the evaluation stack (transformers)")
    if args.tasks:
        kind, items = tasks.load(_path(args.tasks))
        benchmark = args.tasks
    else:
        from bootlab import taxonomy  # noqa: PLC0415

        kind = "judged"
        items = [
            tasks.Judged(pair.question, pair.answer)
            for leaf in taxonomy.leaves(_path(args.taxonomy))
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
        served = _api(paths, "GET", "/v1/services/serve")
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
    if args.json:
        _print_json([result.to_json() for result in results])
    else:
        print(run.table(results))
    return Exit.OK


def cmd_taxonomy_validate(args: argparse.Namespace, paths: Paths) -> int:
    from bootlab import taxonomy  # noqa: PLC0415

    report = taxonomy.check(_path(args.path))
    if args.json:
        _taxonomy_json(report)
    else:
        _taxonomy_problems(report, args.all)
    return _taxonomy_verdict(report, args.json)


def cmd_taxonomy_diff(args: argparse.Namespace, paths: Paths) -> int:
    from bootlab import taxonomy  # noqa: PLC0415

    report, found = taxonomy.check_changed(_path(args.path), args.ref)
    changes = [(str(report.root / change.path), change.status) for change in found.changes]
    if args.json:
        listed = [{"path": path, "status": status} for path, status in changes]
        _taxonomy_json(report, {"base": found.base, "changes": listed})
        return _taxonomy_verdict(report, as_json=True)
    if not changes:
        print(f"no new or changed leaves against {found.base}" if found.compared else "no leaves")
        return Exit.OK
    print(f"leaves new or changed against {found.base}:" if found.compared else f"{found.base}:")
    _table([[f"  {status}", path] for path, status in changes])
    _taxonomy_problems(report, args.all)
    return _taxonomy_verdict(report)


# The parser ----------------------------------------------------------------------------------


def command(
    group: Any, name: str, handler: Command, help_text: str, *, json_output: bool = False
) -> argparse.ArgumentParser:
    sub: argparse.ArgumentParser = group.add_parser(name, help=help_text, description=help_text)
    sub.set_defaults(handler=handler)
    if json_output:
        sub.add_argument("--json", action="store_true", help="print JSON for scripts")
    return sub


def _add_model_commands(commands: Any) -> None:
    model = commands.add_parser("model", help="The model store").add_subparsers(
        metavar="ACTION", required=True
    )
    command(model, "list", cmd_model_list, "Models in the store", json_output=True)
    evaluate = command(
        model,
        "evaluate",
        cmd_model_evaluate,
        "Score a model (or compare two) on a benchmark file or a taxonomy's questions",
        json_output=True,
    )
    evaluate.add_argument("name", help="a model from the store, or a checkpoint's directory")
    evaluate.add_argument("--against", metavar="MODEL", help="compare with this model")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--tasks", metavar="FILE", help="a benchmark JSONL file")
    source.add_argument("--taxonomy", metavar="PATH", help="the taxonomy's seed questions")
    evaluate.add_argument("--judge-endpoint", dest="judge_endpoint", help="OpenAI API base URL")
    evaluate.add_argument("--judge-model", dest="judge_model", help="the judge's model name")
    evaluate.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=256)
    pull = command(
        model,
        "pull",
        cmd_model_pull,
        "Pull docker://, oci://, hf://ORG/REPO[@REV] or a local path",
        json_output=True,
    )
    pull.add_argument("reference")
    pull.add_argument("--name", help="the model's name in the store (default: from REFERENCE)")
    pull.add_argument("--tls-verify", type=_boolean, default=True, metavar="BOOL")
    push = command(
        model, "push", cmd_model_push, "Push a model as an OCI artifact", json_output=True
    )
    push.add_argument("name")
    push.add_argument("reference", help="docker://REGISTRY/REPOSITORY:TAG")
    push.add_argument("--tls-verify", type=_boolean, default=True, metavar="BOOL")
    for action, handler, summary in (
        ("inspect", cmd_model_inspect, "A model, file by file"),
        ("verify", cmd_model_verify, "Re-hash a model's files against their digests"),
        ("remove", cmd_model_remove, "Remove a model's name"),
    ):
        sub = command(model, action, handler, summary, json_output=True)
        sub.add_argument("name")
    command(model, "gc", cmd_model_gc, "Free blobs and downloads no model uses", json_output=True)


def _add_data_commands(commands: Any) -> None:
    data = commands.add_parser("data", help="Training datasets").add_subparsers(
        metavar="ACTION", required=True
    )
    data_import = command(
        data,
        "import",
        cmd_data_import,
        "Validate a messages JSONL file, then keep it",
        json_output=True,
    )
    data_import.add_argument("path")
    data_import.add_argument("--name", help="default: the file's name")
    data_import.add_argument(
        "--context", type=int, help="refuse samples longer than this many tokens (roughly)"
    )
    command(data, "list", cmd_data_list, "Datasets kept", json_output=True)
    data_inspect = command(data, "inspect", cmd_data_inspect, "One dataset", json_output=True)
    data_inspect.add_argument("name")
    generate = command(
        data,
        "generate",
        cmd_data_generate,
        "Synthetic training data from a taxonomy, through a teacher model",
        json_output=True,
    )
    generate.add_argument("taxonomy", nargs="?", default=".", help="default: this directory")
    generate.add_argument("--name", required=True, help="datasets NAME-knowledge, NAME-skills")
    which = generate.add_mutually_exclusive_group()
    which.add_argument("--ref", help="leaves changed against this git ref (default: main)")
    which.add_argument("--all", action="store_true", help="every leaf, changed or not")
    generate.add_argument("--endpoint", help="an OpenAI API base URL (default: what is served)")
    generate.add_argument("--model", help="the teacher's model name at --endpoint")
    generate.add_argument("--api-key-file", dest="api_key_file", help="the endpoint's API key")
    generate.add_argument("--concurrency", type=int, default=8, help="requests at once")
    generate.add_argument("--rounds", type=int, default=2, help="requests a skill or chunk")
    generate.add_argument("--judge", action="store_true", help="drop pairs the teacher scores low")
    generate.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _add_taxonomy_commands(commands: Any) -> None:
    taxonomy = commands.add_parser(
        "taxonomy", help="InstructLab taxonomies (qna.yaml leaves), checked locally"
    ).add_subparsers(metavar="ACTION", required=True)
    init = command(
        taxonomy,
        "init",
        cmd_taxonomy_init,
        "Write a starting taxonomy: a git repository with a knowledge and a skill example",
    )
    init.add_argument(
        "path", nargs="?", default="taxonomy", help="a new folder (default: taxonomy)"
    )
    validate = command(
        taxonomy,
        "validate",
        cmd_taxonomy_validate,
        "Check every leaf: errors with file:line and field (exit 65 when any)",
        json_output=True,
    )
    diff = command(
        taxonomy,
        "diff",
        cmd_taxonomy_diff,
        "List the leaves new or changed against a git ref, and untracked ones; check them",
        json_output=True,
    )
    diff.add_argument("--ref", help="branch, tag or commit (default: main, master, else HEAD)")
    for sub in (validate, diff):
        sub.add_argument(
            "path",
            nargs="?",
            default=".",
            help="the taxonomy, a folder in it or one qna.yaml (default: .)",
        )
        sub.add_argument("--all", action="store_true", help="show every problem, not the first 20")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bootlab",
        description="Manage the bootlab AI appliance: registry auth, models, serving, training.",
    )
    parser.add_argument("--version", action="version", version=f"bootlab {__version__}")
    parser.set_defaults(handler=None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    command(
        commands, "status", cmd_status, "Services, GPU lock, registries, upgrades", json_output=True
    )

    login = command(
        commands, "login", cmd_login, "Log in to a registry, for podman and bootc upgrade alike"
    )
    login.add_argument("registry", help="host[:port], e.g. quay.io")
    login.add_argument("-u", "--username")
    login.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (never from arguments)",
    )
    login.add_argument(
        "--tls-verify",
        type=_boolean,
        default=True,
        metavar="BOOL",
        help="verify the registry's TLS certificate (default true)",
    )
    logout = command(commands, "logout", cmd_logout, "Forget a registry's credentials")
    logout.add_argument("registry")

    auth = commands.add_parser("auth", help="Registry credentials").add_subparsers(
        metavar="ACTION", required=True
    )
    command(auth, "status", cmd_auth_status, "Registries logged in to", json_output=True)

    system = commands.add_parser("system", help="This machine").add_subparsers(
        metavar="ACTION", required=True
    )
    command(
        system,
        "info",
        cmd_system_info,
        "GPUs, CPU, memory, disk and hardware profile",
        json_output=True,
    )

    config = commands.add_parser("config", help="Appliance settings").add_subparsers(
        metavar="ACTION", required=True
    )
    init = command(
        config,
        "init",
        cmd_config_init,
        "Write /etc/bootlab/config.yaml with defaults for this machine",
    )
    init.add_argument("--force", action="store_true", help="replace (and keep aside) the old file")
    command(config, "show", cmd_config_show, "Settings in effect", json_output=True)

    for add_commands in (_add_model_commands, _add_data_commands, _add_taxonomy_commands):
        add_commands(commands)

    for workload in ("serve", "train"):
        actions = commands.add_parser(
            workload, help=f"The {workload} service (bootlab-{workload}.service)"
        ).add_subparsers(metavar="ACTION", required=True)
        for action, summary in (
            ("start", f"Start {workload} (stops {'train' if workload == 'serve' else 'serve'})"),
            ("stop", f"Stop {workload}"),
            ("status", f"State of {workload}"),
        ):
            sub = command(actions, action, cmd_service, summary, json_output=True)
            sub.set_defaults(workload=workload, action=action)
            if action == "start":
                sub.add_argument(
                    "model", nargs="?", help="a model from the store, for this start only"
                )
                if workload == "train":
                    sub.add_argument(
                        "--job", metavar="FILE", help="a YAML job (train settings: phases, ...)"
                    )
                    sub.add_argument(
                        "--follow", action="store_true", help="show progress until it ends"
                    )
                if workload == "serve":
                    sub.add_argument("--port", type=int, help="for this start only")
                    sub.add_argument("--backend", choices=["auto", "vllm", "llama-cpp"])
                    sub.add_argument("--max-model-len", type=int, dest="max_model_len")
        run = command(
            actions,
            "run",
            cmd_workload_run,
            f"Entrypoint of bootlab-{workload}.service (systemd runs it)",
        )
        run.set_defaults(workload=workload)

    gpu = commands.add_parser("gpu", help="The GPU lock").add_subparsers(
        metavar="ACTION", required=True
    )
    gpu_run = command(
        gpu,
        "run",
        cmd_gpu_run,
        "Run a command holding the GPU lock (serve/train cannot start meanwhile)",
    )
    gpu_run.add_argument("--as", dest="holder", default="manual", help="name shown to others")
    gpu_run.add_argument("command", nargs=argparse.REMAINDER)

    command(gpu, "cdi", cmd_gpu_cdi, "Regenerate the NVIDIA CDI spec (run at boot)")

    upgrade = commands.add_parser("upgrade", help="Image updates").add_subparsers(
        metavar="ACTION", required=True
    )
    command(
        upgrade,
        "check",
        cmd_upgrade_check,
        "Ask bootc whether an update is available (the informer timer runs this)",
        json_output=True,
    )

    chat_command = command(
        commands,
        "chat",
        cmd_chat,
        "Chat with the served model (interactive, or one question with -q)",
    )
    chat_command.add_argument("-q", "--query", help="ask one question, print the answer")
    chat_command.add_argument("--model", help="default: what bootlab-serve serves")
    chat_command.add_argument(
        "--endpoint", help="default: bootlab-serve's, e.g. http://127.0.0.1:8000/v1"
    )
    chat_command.add_argument("--max-tokens", type=int, default=256)

    completion = command(commands, "completion", cmd_completion, "Shell completion script")
    completion.add_argument("shell", choices=["bash"])
    return parser


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "yes", "1"):
        return True
    if value in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"'{text}' is not true or false")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.handler is None:
        parser.print_help()
        return Exit.OK
    try:
        return int(args.handler(args, Paths.from_env()))
    except BootlabError as error:
        print(error.render(), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return Exit.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
