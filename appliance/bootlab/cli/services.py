"""`bootlab serve|train|gpu|upgrade ...`: the services as the admin starts and watches them
(through bootlabd), and the entrypoints systemd runs (`serve run`, `train run`, `gpu cdi`,
`upgrade check`), which work locally."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING

from bootlab.cli.calls import ask
from bootlab.cli.command import Arg, Command, Kind, Shown, command
from bootlab.cli.output import ago, service_line, table, training_line
from bootlab.errors import Exit, die
from bootlab.paths import Paths

if TYPE_CHECKING:
    from bootlab.api import ServiceState, UpgradeStatus


def cmd_service(args: argparse.Namespace, paths: Paths) -> Shown[ServiceState]:
    workload = args.workload
    if args.action == "status":
        state = ask(paths, "GET", f"/v1/services/{workload}")
    elif args.action == "start":
        from bootlab.workload import request  # noqa: PLC0415

        body = request.body(vars(args), getattr(args, "job", None))
        state = ask(paths, "POST", f"/v1/services/{workload}/start", body)
        if getattr(args, "follow", False):
            state = _follow_training(paths)
    else:
        state = ask(paths, "POST", f"/v1/services/{workload}/{args.action}")
    return Shown(state, _show_service)


def _show_service(state: ServiceState) -> None:
    table([service_line(state)])
    if state.endpoint:
        table(
            [
                ["model:", state.model or "-"],
                ["backend:", state.backend or "-"],
                ["endpoint:", state.endpoint],
                ["serving for:", ago(state.ready_at).removesuffix(" ago")],
            ]
        )
    training = state.training
    if training:
        progress = training.progress
        table(
            [
                ["job:", f"{training.job} ({training.state})"],
                ["phases:", ", ".join(training.phases)],
                ["running on:", training.device or "-"],
                ["progress:", training_line(progress) if progress else "-"],
                ["result:", f"model {training.output}"],
            ]
        )


def _follow_training(paths: Paths) -> ServiceState:
    """Show the job's progress until it ends (done, stopped, or the unit failed)."""
    interactive = sys.stderr.isatty()
    last_line = 0.0
    while True:
        state: ServiceState = ask(paths, "GET", "/v1/services/train")
        training = state.training
        progress = training.progress if training else None
        if progress and (interactive or time.monotonic() - last_line > 5):
            end = "" if interactive else "\n"
            print("\r" + training_line(progress), end=end, file=sys.stderr, flush=True)
            last_line = time.monotonic()
        ended = state.active in {"failed", "inactive"}
        if (training and training.state in {"done", "stopped"}) or ended:
            if interactive:
                print(file=sys.stderr)
            if state.active == "failed":
                raise die(
                    "training failed",
                    hint="see why: journalctl -u bootlab-train -n 50",
                    exit_code=Exit.ERROR,
                )
            return state
        time.sleep(1.0)


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


def cmd_boot_restore(args: argparse.Namespace, paths: Paths) -> int:
    """bootlab-restore.service's ExecStart: what ran before the reboot runs again."""
    from bootlab import journal  # noqa: PLC0415
    from bootlab.workload import desired  # noqa: PLC0415

    journal.setup_logging("bootlab-restore")
    print(desired.restore(paths))
    return Exit.OK


def cmd_upgrade_check(args: argparse.Namespace, paths: Paths) -> Shown[UpgradeStatus]:
    from bootlab import upgrade  # noqa: PLC0415

    status = upgrade.check(paths)
    return Shown(
        status,
        lambda s: print(s.message),
        document=status.model_dump(mode="json"),
        exit_code=Exit.OK if status.available is not None else Exit.ERROR,
    )


def _workload(workload: str) -> tuple[Command, ...]:
    """serve and train: the same verbs, each start with its own options."""
    other = "train" if workload == "serve" else "serve"
    options = (
        (
            Arg(("--port",), type=int, help="for this start only"),
            Arg(("--backend",), choices=("auto", "vllm", "llama-cpp")),
            Arg(("--max-model-len",), type=int, dest="max_model_len"),
        )
        if workload == "serve"
        else (
            Arg(("--job",), metavar="FILE", help="a YAML job (train settings: phases, ...)"),
            Arg(("--follow",), action="store_true", help="show progress until it ends"),
        )
    )
    model = Arg(("model",), nargs="?", help="a model from the store, for this start only")
    return (
        *(
            Command(
                workload,
                action,
                summary,
                cmd_service,
                Kind.CLIENT,
                json=True,
                args=(model, *options) if action == "start" else (),
                defaults={"workload": workload, "action": action},
            )
            for action, summary in (
                ("start", f"Start {workload} (stops {other})"),
                ("stop", f"Stop {workload}"),
                ("status", f"State of {workload}"),
            )
        ),
        Command(
            workload,
            "run",
            f"Entrypoint of bootlab-{workload}.service (systemd runs it)",
            cmd_workload_run,
            Kind.ENTRYPOINT,
            defaults={"workload": workload},
        ),
    )


NOUNS = {
    "serve": "The serve service (bootlab-serve.service)",
    "train": "The train service (bootlab-train.service)",
    "gpu": "The GPU lock",
    "upgrade": "Image updates",
    "boot": "What happens at boot",
}

COMMANDS = (
    *_workload("serve"),
    *_workload("train"),
    command(
        "gpu run",
        "Run a command holding the GPU lock (serve/train cannot start meanwhile)",
        cmd_gpu_run,
        Arg(("--as",), dest="holder", default="manual", help="name shown to others"),
        Arg(("command",), nargs=argparse.REMAINDER),
        kind=Kind.LOCAL,
    ),
    command(
        "gpu cdi",
        "Regenerate the NVIDIA CDI spec (run at boot)",
        cmd_gpu_cdi,
        kind=Kind.ENTRYPOINT,
    ),
    command(
        "boot restore",
        "Start what ran before the reboot: serve, train (its job resumes) or nothing",
        cmd_boot_restore,
        kind=Kind.ENTRYPOINT,
    ),
    command(
        "upgrade check",
        "Ask bootc whether an update is available (the informer timer runs this)",
        cmd_upgrade_check,
        kind=Kind.ENTRYPOINT,
        json=True,
    ),
)
