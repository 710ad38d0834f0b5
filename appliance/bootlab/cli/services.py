"""`bootlab serve|train|gpu|upgrade ...`: the services as the admin starts and watches them
(through bootlabd), and the entrypoints systemd runs (`serve run`, `train run`, `gpu cdi`,
`upgrade check`), which work locally."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from bootlab.cli.calls import ask
from bootlab.cli.command import Arg, Command, Kind, Shown, command
from bootlab.cli.output import ago, service_line, table, training_line
from bootlab.errors import BootlabError, Exit, die
from bootlab.paths import Paths

if TYPE_CHECKING:
    from bootlab.api import ServiceState, UpgradeStatus


def cmd_service(args: argparse.Namespace, paths: Paths) -> Shown[ServiceState]:
    workload = args.workload
    if args.action == "status":
        state = ask(paths, "GET", f"/v1/services/{workload}")
        return Shown(state, _show_service)
    if args.action == "start":
        from bootlab.workload import request  # noqa: PLC0415

        body = request.body(vars(args), getattr(args, "job", None))
        state = ask(paths, "POST", f"/v1/services/{workload}/start", body)
    else:
        state = ask(paths, "POST", f"/v1/services/{workload}/stop")
    if not args.no_wait:
        state = wait(
            args.action,
            state,
            lambda: ask(paths, "GET", f"/v1/services/{workload}"),
            Progress(sys.stderr),
        )
        if getattr(args, "follow", False):
            state = _follow_training(paths)
    return Shown(state, _show_service)


class Progress:
    """What a unit says while its job runs (its STATUS= text): one live line on a terminal,
    else a plain line each time the text changes."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self._shown = ""

    def show(self, state: ServiceState, elapsed_s: float) -> None:
        if state.status:
            detail = state.status
        elif state.active == "inactive":  # queued: the other unit is stopping first
            detail = "waiting for its turn"
        else:
            detail = f"{state.active} ({state.sub})"
        if self.live:
            line = f"{state.unit}: {detail} [{elapsed_s:.0f}s]"
            print(f"\r{line}\x1b[K", end="", file=self.stream, flush=True)
        elif detail != self._shown:
            print(f"{state.unit}: {detail}", file=self.stream, flush=True)
        self._shown = detail

    def end(self) -> None:
        if self.live and self._shown:
            print(file=self.stream, flush=True)
        self._shown = ""


POLL_S = 0.5


def wait(
    action: str,
    asked: ServiceState,
    read: Callable[[], ServiceState],
    progress: Progress,
    sleep: Callable[[float], None] = time.sleep,
) -> ServiceState:
    """Wait for the job a start or stop queued (`asked.job`) to end, as systemctl does: for
    as long as the unit allows (systemd ends the job at the unit's own timeouts), showing
    what the unit says meanwhile. A start that did not reach READY fails with the unit's
    reason (the failure file's error and exit code); Ctrl-C stops waiting, not the job."""
    began = time.monotonic()
    state = asked
    try:
        while asked.job is not None and state.job == asked.job:
            progress.show(state, time.monotonic() - began)
            sleep(POLL_S)
            state = read()
    except KeyboardInterrupt:
        progress.end()
        doing = "starting" if action == "start" else "stopping"
        undo = f"; `bootlab {asked.workload} stop` cancels it" if action == "start" else ""
        raise die(
            f"stopped waiting; {asked.unit} is still {doing} (systemd job {asked.job})",
            hint=f"`bootlab {asked.workload} status` shows where it is{undo}",
            exit_code=Exit.INTERRUPTED,
        ) from None
    progress.end()
    return outcome(asked, state) if action == "start" else state


def outcome(asked: ServiceState, state: ServiceState) -> ServiceState:
    """The state a start's job ended in, or why it did not reach READY. A unit that became
    active during the job started, like systemctl says, even if it stopped since (a
    training job that had already finished)."""
    if state.active == "active" or state.active_enter != asked.active_enter:
        return state
    unit = state.unit
    if state.failure is not None:
        failure = state.failure
        raise BootlabError(failure.error, failure.hint, failure.code)
    if state.result == "start-limit-hit":
        raise die(
            f"{unit} was started too often in a short time; systemd refuses for now",
            hint=f"wait a few seconds, or: systemctl reset-failed {unit}",
            exit_code=Exit.CONFLICT,
        )
    if state.active == "inactive" and state.result == "success":
        raise die(
            f"the start of {unit} was canceled (a stop, or another start, replaced it)",
            hint=f"`bootlab {state.workload} status` shows its state now",
            exit_code=Exit.CONFLICT,
        )
    why = f" ({state.result})" if state.result != "success" else ""
    raise die(
        f"{unit} failed to start{why}",
        hint=f"see why: journalctl -u {unit} -n 50 (or bootlab {state.workload} status)",
        exit_code=Exit.CONFLICT,
    )


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
    no_wait = Arg(
        ("--no-wait",),
        action="store_true",
        dest="no_wait",
        help="queue it and return at once, printing the state (like systemctl --no-block)",
    )
    ready = "answers" if workload == "serve" else "has checked its data"
    return (
        *(
            Command(
                workload,
                action,
                summary,
                cmd_service,
                Kind.CLIENT,
                json=True,
                args=arguments,
                defaults={"workload": workload, "action": action},
            )
            for action, summary, arguments in (
                (
                    "start",
                    f"Start {workload} (stops {other}); waits until it {ready}",
                    (model, *options, no_wait),
                ),
                ("stop", f"Stop {workload}; waits until it has stopped", (no_wait,)),
                ("status", f"State of {workload}", ()),
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
