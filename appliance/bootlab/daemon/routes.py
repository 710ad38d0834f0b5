"""What the API does: one table of routes, each a method, a path, the body it takes, the body
it answers and a handler. The server dispatches from it and the OpenAPI schema is made
from it, so the two cannot drift apart."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel

from bootlab import (
    __version__,
    auth,
    config,
    datasets,
    gpu_lock,
    registry,
    sysinfo,
    upgrade,
)
from bootlab.api import (
    AuthEntry,
    AuthStatus,
    ConfigInitRequest,
    ConfigInitResponse,
    ConfigView,
    DatasetImportRequest,
    DatasetList,
    DatasetView,
    GcResult,
    GenerateRequest,
    Job,
    LoginRequest,
    LoginResponse,
    LogoutRequest,
    LogoutResponse,
    Model,
    ModelFile,
    ModelList,
    PullRequest,
    PushRequest,
    ServiceState,
    StartRequest,
    Status,
    VerifyResult,
)
from bootlab.daemon.jobs import Jobs
from bootlab.errors import BootlabError, Exit, die
from bootlab.paths import Paths
from bootlab.store import sources
from bootlab.store.fetch import Progress
from bootlab.store.layout import ModelRecord, Store, check_name, model_store
from bootlab.store.sources import registry as registry_source
from bootlab.workload import request, units


@dataclass
class Context:
    paths: Paths
    jobs: Jobs = field(default_factory=Jobs)
    # GPUs do not come and go while the machine runs: probe once, when first needed.
    _profile: sysinfo.HardwareProfile | None = None
    _probe_lock: threading.Lock = field(default_factory=threading.Lock)

    def profile(self) -> sysinfo.HardwareProfile:
        """The hardware profile, probing once (nvidia-smi can take seconds on a big host)."""
        with self._probe_lock:
            if self._profile is None:
                self._profile = sysinfo.probe(self.paths.state).profile
            return self._profile

    def profile_name(self) -> str:
        """For status, which must answer at once: the daemon probes in the background from
        its start, and status says so until that is done."""
        if self._profile is None and not self._probe_lock.acquire(blocking=False):
            return "(probing hardware)"
        if self._profile is None:
            self._probe_lock.release()
            return self.profile().name
        return self._profile.name


# Set by the server in every handler's parameters: the uid of the peer on the socket.
CALLER_UID = "caller_uid"

Handler = Callable[[Context, dict[str, str], Any], BaseModel]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # with {name} parameters
    summary: str
    handler: Handler
    response: type[BaseModel]
    body: type[BaseModel] | None = None
    parameters: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name → allowed

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path) + "$")


def _view(service: units.Service) -> ServiceState:
    """The unit as systemd says (since: seconds, not µs), with what is served, if anything."""
    unit = asdict(service.unit)
    since_us = unit.pop("since_us")
    unit["job"] = unit["job"] or None
    active_enter_us = unit.pop("active_enter_us")
    served = service.serving
    shown = served.model_dump(include={"model", "backend", "endpoint"}) if served else {}
    return ServiceState(
        workload=service.workload,
        **unit,
        **shown,
        since=since_us / 1e6 if since_us else None,
        active_enter=active_enter_us / 1e6 if active_enter_us else None,
        ready_at=served.ready if served else None,
        training=service.training,
        failure=service.failure,
    )


def get_status(context: Context, _: dict[str, str], __: None) -> Status:
    warnings: list[str] = []
    config_error = None
    try:
        config.load(context.paths)
    except BootlabError as error:
        config_error = error.message
    entries, auth_warnings = auth.stored(context.paths)
    warnings += auth_warnings
    holder = gpu_lock.holder(context.paths.gpu_lock)
    states = []
    for workload in units.WORKLOADS:
        try:
            states.append(_view(units.describe(workload, context.paths)))
        except BootlabError as error:
            warnings.append(error.message)
    return Status(
        version=__version__,
        hostname=socket.gethostname(),
        profile=context.profile_name(),
        services=states,
        gpu_holder=f"{holder.name} (pid {holder.pid})" if holder else None,
        registries=[entry.registry for entry in entries],
        upgrade=upgrade.last(context.paths),
        config_error=config_error,
        warnings=warnings,
    )


def get_system_info(context: Context, _: dict[str, str], __: None) -> sysinfo.SystemInfo:
    return sysinfo.probe(context.paths.state)


def get_auth(context: Context, _: dict[str, str], __: None) -> AuthStatus:
    entries, warnings = auth.stored(context.paths)
    return AuthStatus(
        registries=[
            AuthEntry(registry=e.registry, username=e.username, podman=e.podman, bootc=e.bootc)
            for e in entries
        ],
        warnings=warnings,
    )


def post_login(context: Context, _: dict[str, str], body: LoginRequest) -> LoginResponse:
    name = registry.normalize_registry(body.registry)
    credentials = auth.Credentials(body.username, body.password.get_secret_value())
    result = registry.check_login(name, credentials, tls_verify=body.tls_verify)
    warnings = auth.store(context.paths, name, credentials)
    if result.anonymous:
        warnings.append(f"{name} lets anyone in: the credentials were saved but not checked")
    files = [str(context.paths.containers_auth), str(context.paths.ostree_auth)]
    return LoginResponse(registry=name, anonymous=result.anonymous, files=files, warnings=warnings)


def post_logout(context: Context, _: dict[str, str], body: LogoutRequest) -> LogoutResponse:
    name = registry.normalize_registry(body.registry)
    removed = auth.remove(context.paths, name)
    return LogoutResponse(registry=name, removed_from=[str(path) for path in removed])


def get_config(context: Context, _: dict[str, str], __: None) -> ConfigView:
    paths = context.paths
    files = [str(p) for p in (paths.defaults_file, paths.config_file) if p.exists()]
    return ConfigView(config=config.load(paths), files=files)


def post_config_init(
    context: Context, _: dict[str, str], body: ConfigInitRequest
) -> ConfigInitResponse:
    profile = context.profile()
    text = config.initial_text(profile.gpu_count, profile.name)
    backup = config.write_initial(context.paths, text, force=body.force)
    return ConfigInitResponse(
        path=str(context.paths.config_file),
        backup=str(backup) if backup else None,
        profile=profile.name,
    )


def get_service(context: Context, params: dict[str, str], __: None) -> ServiceState:
    workload = cast(units.Workload, params["workload"])
    return _view(units.describe(workload, context.paths))


def post_service_start(
    context: Context, params: dict[str, str], body: StartRequest
) -> ServiceState:
    workload = cast(units.Workload, params["workload"])
    changes = request.changes(workload, body.model_dump(exclude_none=True))
    started = units.start(workload, context.paths, changes)
    return _view(units.describe(workload, context.paths, started))


def post_service_stop(context: Context, params: dict[str, str], __: None) -> ServiceState:
    workload = cast(units.Workload, params["workload"])
    return _view(units.describe(workload, context.paths, units.stop(workload)))


# Models --------------------------------------------------------------------------------------


def _store(context: Context) -> Store:
    return model_store(context.paths, config.load(context.paths).models.directory)


def _model(store: Store, record: ModelRecord) -> Model:
    return Model(
        name=record.name,
        path=str(store.models / record.name),
        source=record.source,
        snapshot=record.snapshot,
        manifest=record.manifest,
        size=record.size,
        pulled_at=record.pulled_at,
        files=[ModelFile(path=p, digest=f.digest, size=f.size) for p, f in record.files.items()],
    )


def get_models(context: Context, _: dict[str, str], __: None) -> ModelList:
    store = _store(context)
    store.ensure()
    models = [_model(store, record) for record in store.records()]
    return ModelList(models=models, store_bytes=store.footprint())


def get_model(context: Context, params: dict[str, str], _: None) -> Model:
    store = _store(context)
    return _model(store, store.record(params["name"]))


def _root_only(params: dict[str, str]) -> None:
    """Local files go only from root into /var/lib/bootlab, which the bootlab group can read:
    a member importing a file could otherwise read what only root may."""
    if params.get(CALLER_UID) != "0":
        raise die(
            "only root may import local files into the appliance",
            hint="run it with sudo",
            exit_code=Exit.NO_PERMISSION,
        )


def post_pull(context: Context, params: dict[str, str], body: PullRequest) -> Job:
    if sources.is_local(body.reference):
        _root_only(params)
    store = _store(context)
    settings = config.load(context.paths)
    name = check_name(body.name or sources.default_name(body.reference))
    options = sources.PullOptions(
        tls_verify=body.tls_verify, hf_endpoint=settings.models.hf_endpoint
    )

    def work(progress: Progress) -> Model:
        record = sources.pull(
            body.reference, name, store, context.paths, progress=progress, options=options
        )
        return _model(store, record)

    return context.jobs.start("pull", f"{body.reference} as {name}", work)


def post_push(context: Context, _: dict[str, str], body: PushRequest) -> Job:
    store = _store(context)
    store.record(body.name)  # a missing model is an answer now, not a failed job later

    def work(progress: Progress) -> Model:
        registry_source.push(
            body.name,
            body.reference,
            store,
            context.paths,
            tls_verify=body.tls_verify,
            progress=progress,
        )
        return _model(store, store.record(body.name))

    return context.jobs.start("push", f"{body.name} to {body.reference}", work)


WAIT_S = 0.5


def get_job(context: Context, params: dict[str, str], _: None) -> Job:
    return _found(context.jobs.get(params["id"]), params["id"])


def get_job_wait(context: Context, params: dict[str, str], _: None) -> Job:
    return _found(context.jobs.get(params["id"], wait_s=WAIT_S), params["id"])


def _found(job: Job | None, job_id: str) -> Job:
    if job is None:
        raise die(
            f"no job '{job_id}'",
            hint="jobs are kept until bootlabd restarts",
            exit_code=Exit.NOT_FOUND,
        )
    return job


def post_verify(context: Context, params: dict[str, str], _: None) -> VerifyResult:
    problems = _store(context).verify(params["name"])
    return VerifyResult(name=params["name"], ok=not problems, problems=problems)


def post_remove(context: Context, params: dict[str, str], _: None) -> Model:
    store = _store(context)
    with store.locked(check_name(params["name"])):
        return _model(store, store.remove(params["name"]))


def post_gc(context: Context, _: dict[str, str], __: None) -> GcResult:
    report = _store(context).gc()
    return GcResult(
        blobs=report.blobs,
        snapshots=report.snapshots,
        partials=report.partials,
        bytes_freed=report.bytes_freed,
    )


# Datasets ------------------------------------------------------------------------------------


def get_datasets(context: Context, _: dict[str, str], __: None) -> DatasetList:
    found = datasets.listing(context.paths.state)
    return DatasetList(datasets=[DatasetView(**asdict(d)) for d in found])


def get_dataset(context: Context, params: dict[str, str], _: None) -> DatasetView:
    return DatasetView(**asdict(datasets.get(context.paths.state, params["name"])))


def post_dataset_import(
    context: Context, params: dict[str, str], body: DatasetImportRequest
) -> DatasetView:
    _root_only(params)
    source = Path(body.path)
    if not source.is_absolute():
        raise die(f"'{body.path}' is not an absolute path", exit_code=Exit.USAGE)
    name = body.name or source.stem
    imported = datasets.import_file(context.paths.state, source, name, context=body.context)
    return DatasetView(**asdict(imported))


def post_generate(context: Context, params: dict[str, str], body: GenerateRequest) -> Job:
    """Synthetic data as a job: the taxonomy's leaves through the teacher, the output kept
    as datasets NAME-knowledge and NAME-skills. Root only: the taxonomy and its documents
    are read from this machine's files."""
    from bootlab.sdg import generate, job  # noqa: PLC0415 - the generator, only here

    _root_only(params)
    name = check_name(body.name)
    source = job.taxonomy_dir(body.taxonomy)
    teacher = job.teacher(context.paths, body.endpoint, body.model, body.api_key_file)
    settings = generate.Settings(rounds=body.rounds, concurrency=body.concurrency, judge=body.judge)
    what, work = job.plan(
        context.paths, name, source, teacher, ref=body.ref, every_leaf=body.all, settings=settings
    )
    return context.jobs.start(
        "generate", what, lambda progress: [DatasetView(**asdict(d)) for d in work(progress)]
    )


_WORKLOAD: dict[str, tuple[str, ...]] = {"workload": tuple(units.WORKLOADS)}

ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/status", "Appliance status at a glance", get_status, Status),
    Route(
        "GET",
        "/v1/system/info",
        "Hardware: GPUs, CPU, memory, disk",
        get_system_info,
        sysinfo.SystemInfo,
    ),
    Route("GET", "/v1/auth", "Registries logged in to (never secrets)", get_auth, AuthStatus),
    Route(
        "POST",
        "/v1/auth/login",
        "Check credentials, then store them for podman and bootc",
        post_login,
        LoginResponse,
        LoginRequest,
    ),
    Route(
        "POST",
        "/v1/auth/logout",
        "Forget a registry's credentials",
        post_logout,
        LogoutResponse,
        LogoutRequest,
    ),
    Route("GET", "/v1/config", "Settings in effect", get_config, ConfigView),
    Route(
        "POST",
        "/v1/config/init",
        "Write /etc/bootlab/config.yaml for this machine",
        post_config_init,
        ConfigInitResponse,
        ConfigInitRequest,
    ),
    Route(
        "GET",
        "/v1/services/{workload}",
        "State of the serve or train service",
        get_service,
        ServiceState,
        parameters=_WORKLOAD,
    ),
    Route(
        "POST",
        "/v1/services/{workload}/start",
        "Start serve or train (stops the other): answers at once, with the start's job; "
        "poll the state until the job ends",
        post_service_start,
        ServiceState,
        StartRequest,
        parameters=_WORKLOAD,
    ),
    Route(
        "POST",
        "/v1/services/{workload}/stop",
        "Stop serve or train: answers at once, with the stop's job",
        post_service_stop,
        ServiceState,
        parameters=_WORKLOAD,
    ),
    Route("GET", "/v1/models", "Models in the store", get_models, ModelList),
    Route(
        "POST",
        "/v1/models/pull",
        "Pull a model (a job: poll /v1/jobs/{id})",
        post_pull,
        Job,
        PullRequest,
    ),
    Route(
        "POST",
        "/v1/models/push",
        "Push a model as an OCI artifact (a job)",
        post_push,
        Job,
        PushRequest,
    ),
    Route("POST", "/v1/models/gc", "Free what no model uses", post_gc, GcResult),
    Route("GET", "/v1/models/{name}", "One model, file by file", get_model, Model),
    Route(
        "POST",
        "/v1/models/{name}/verify",
        "Re-hash a model's files",
        post_verify,
        VerifyResult,
    ),
    Route(
        "POST",
        "/v1/models/{name}/remove",
        "Remove a name (gc frees the space)",
        post_remove,
        Model,
    ),
    Route("GET", "/v1/jobs/{id}", "Progress of a pull or push", get_job, Job),
    Route("GET", "/v1/datasets", "Training datasets", get_datasets, DatasetList),
    Route(
        "POST",
        "/v1/datasets/import",
        "Validate a messages JSONL file, then keep it",
        post_dataset_import,
        DatasetView,
        DatasetImportRequest,
    ),
    Route("GET", "/v1/datasets/{name}", "One dataset", get_dataset, DatasetView),
    Route(
        "POST",
        "/v1/datasets/generate",
        "Synthetic data from a taxonomy through a teacher (a job)",
        post_generate,
        Job,
        GenerateRequest,
    ),
    Route(
        "GET",
        "/v1/jobs/{id}/wait",
        f"The job once it ends, or after {WAIT_S}s",
        get_job_wait,
        Job,
    ),
)
