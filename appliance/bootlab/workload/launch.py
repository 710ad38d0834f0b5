"""What launching a workload in the ML venv needs, for serving, training and evaluation alike:
the model it names, in the store and intact; the venv's Python, with the module installed;
and the argv that runs one of bootlab's modules with that Python. Serving's preflight is
bootlab.serve.preflight, training's bootlab.train.preflight; a refusal goes to the failure
file (bootlab.workload.entrypoint), so the `bootlab ... start` that asked for it shows the
same message instead of "unit failed"."""

from __future__ import annotations

from pathlib import Path

import bootlab
from bootlab.config import Config, GpuCount
from bootlab.errors import Exit, die
from bootlab.paths import Paths
from bootlab.store.layout import model_store
from bootlab.sysinfo import SystemInfo


def store_model(config: Config, paths: Paths, name: str | None, setting: str, verb: str) -> Path:
    """The model directory `setting` names, once it is known to be in the store and whole."""
    if name is None:
        raise die(
            f"nothing to {verb}: {setting} is not set in {paths.config_file}",
            hint=f"pull a model with `bootlab model pull`, then set {setting} (or run "
            f"`bootlab {verb} start MODEL`)",
            exit_code=Exit.NOT_CONFIGURED,
        )
    store = model_store(paths, config.models.directory)
    try:
        store.record(name)
    except Exception as error:  # the store's own message, as a configuration problem
        raise die(
            f"{setting} names '{name}', which is not in the model store",
            hint=f"pull it (`bootlab model pull ...`) or fix {setting} in {paths.config_file}",
            exit_code=Exit.NOT_CONFIGURED,
        ) from error
    problems = store.check(name)
    if problems:
        raise die(
            f"model '{name}' is damaged: {problems[0]}",
            hint=f"`bootlab model verify {name}` lists every problem; pull it again",
            exit_code=Exit.NOT_CONFIGURED,
        )
    return store.models / name


def ml_python(
    paths: Paths, module: str, what: str, hint: str = "use an image profile that ships it"
) -> str:
    """The ML venv's Python, when `module` is installed in it."""
    python = paths.ml_venv / "bin" / "python"
    packages = list((paths.ml_venv / "lib").glob(f"python3*/site-packages/{module}/__init__.py"))
    if not python.exists() or not packages:
        raise die(
            f"{what} is not installed in this image ({paths.ml_venv})",
            hint=hint,
            exit_code=Exit.NOT_CONFIGURED,
        )
    return str(python)


def gpu_count(setting: str, wanted: GpuCount, system: SystemInfo) -> int:
    """The GPUs `setting` (serve.gpus, train.gpus) asks for: all of them for auto; refused
    when the machine has fewer."""
    available = len(system.gpus)
    count = available if wanted == "auto" else wanted
    if count > available:
        raise die(
            f"{setting} is {count}, but this machine has {available} GPU(s)",
            hint=f"set {setting}: {available} or auto",
            exit_code=Exit.NOT_CONFIGURED,
        )
    return count


# A module of bootlab run with the ML venv's Python: only bootlab's own package is added,
# after the venv's site-packages, so nothing of the appliance's venv shadows the ML stack.
_BOOTSTRAP = (
    "import runpy, sys; sys.path.append(sys.argv.pop(1)); "
    "runpy.run_module(sys.argv.pop(1), run_name='__main__')"
)


def ml_module_argv(python: str, module: str, *args: str) -> list[str]:
    package_parent = str(Path(bootlab.__file__).resolve().parent.parent)
    return [python, "-I", "-c", _BOOTSTRAP, package_parent, module, *args]
