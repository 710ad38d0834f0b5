"""The serve and train units' ExecStart (`bootlab serve run`, `bootlab train run`): the
config with the start's override laid over it, preflight, the GPU lock, then the supervised
workload, which says READY once the model answers or the training data is checked.

Once it holds the GPUs the workload becomes the appliance's desired state (restored after a
reboot); a stop that is not a shutdown makes it idle again (bootlab.workload.desired).

A refusal goes to the journal (the error raised) and to the failure file, so the
`bootlab ... start` that asked for it shows the same message instead of "unit failed"."""

from __future__ import annotations

from bootlab import config, gpu_lock, journal, sysinfo
from bootlab.errors import BootlabError
from bootlab.paths import Paths
from bootlab.serve import preflight as serve_preflight
from bootlab.serve import supervise as serve_supervise
from bootlab.train import preflight as train_preflight
from bootlab.train import supervise as train_supervise
from bootlab.workload import desired, state
from bootlab.workload.state import Workload


def run(workload: Workload, paths: Paths) -> int:
    """Run `workload` until it ends or is stopped. Returns an `Exit` member, or the
    backend's own code when it dies while serving (systemd's Restart= decides)."""
    journal.setup_logging(f"bootlab-{workload}")
    try:
        settings = state.with_override(config.load(paths), paths, workload)
        system = sysinfo.probe(paths.state)
        if workload == "serve":
            backend, target = serve_preflight.plan(settings, paths, system)
            lock = gpu_lock.acquire(paths.gpu_lock, "serve")
            desired.want(paths, "serve")
            code = serve_supervise.supervise(backend, target, paths, lock)
        else:
            python, job = train_preflight.plan(settings, paths, system)
            lock = gpu_lock.acquire(paths.gpu_lock, "train")
            plan_path = train_preflight.write(paths, job)
            desired.want(paths, "train")
            code = train_supervise.supervise(
                python, job, plan_path, config=settings, paths=paths, lock=lock
            )
    except BootlabError as error:
        state.write_failure(paths, workload, error)
        raise
    desired.settle(paths, workload, code)
    return code
