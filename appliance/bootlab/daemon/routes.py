"""What the API does: one table of routes, each a method, a path, the body it takes, the body
it answers and a handler. The server dispatches from it and the OpenAPI schema is made
from it, so the two cannot drift apart."""

from __future__ import annotations

import functools
import inspect
import re
import socket
import threading
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, cast

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
from bootlab import uploads as uploads_
from bootlab.api import (
    API_VERSION,
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
    Upload,
    UploadRequest,
    VerifyResult,
)
from bootlab.daemon.jobs import Jobs
from bootlab.errors import BootlabError, Exit, die
from bootlab.paths import Paths
from bootlab.store import sources
from bootlab.store.fetch import Progress
from bootlab.store.layout import ModelRecord, Store, check_name, model_store
from bootlab.store.sources import local
from bootlab.store.sources import registry as registry_source
from bootlab.store.unpack import Readable
from bootlab.workload import request, units


@dataclass
class Context:
    paths: Paths
    jobs: Jobs = field(default_factory=Jobs)
    uploads: uploads_.Uploads = field(init=False)
    # GPUs do not come and go while the machine runs: probe once, when first needed.
    _profile: sysinfo.HardwareProfile | None = None
    _probe_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.uploads = uploads_.Uploads(self.paths.state / "uploads")

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


Query = TypeVar("Query", bound=BaseModel)


@dataclass(frozen=True)
class Streamed(Generic[Query]):
    """A streaming route's input: its query string as the model its handler names
    (`Streamed[UploadRequest]`), and the body (a tar stream) to read as it comes."""

    query: Query
    body: Readable


def _caller(params: dict[str, str]) -> int:
    return int(params[CALLER_UID])


@dataclass(frozen=True)
class Route:
    """The body a route takes and the one it answers are its handler's types (the body is
    the third parameter, None when there is none): said once, and checked by mypy."""

    method: str
    path: str  # with {name} parameters
    summary: str
    handler: Handler
    parameters: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name → allowed

    @property
    def stream(self) -> bool:
        """A handler that takes a Streamed reads a stream (a tar: application/x-tar); its
        query string is then the route's `body` model (so says the OpenAPI document too)."""
        return _signature(self.handler)[2]

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path) + "$")

    @property
    def response(self) -> type[BaseModel]:
        return _signature(self.handler)[0]

    @property
    def body(self) -> type[BaseModel] | None:
        return _signature(self.handler)[1]


@functools.cache
def _signature(handler: Handler) -> tuple[type[BaseModel], type[BaseModel] | None, bool]:
    """(response model, body model or None, whether the body is a stream)."""
    signature = inspect.signature(handler, eval_str=True)
    body = list(signature.parameters.values())[2].annotation
    if typing.get_origin(body) is Streamed:
        return signature.return_annotation, typing.get_args(body)[0], True
    return signature.return_annotation, body, False


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


def post_start(context: Context, params: dict[str, str], body: StartRequest) -> ServiceState:
    workload = cast(units.Workload, params["workload"])
    changes = request.changes(workload, body.model_dump(exclude_none=True))
    started = units.start(workload, context.paths, changes)
    return _view(units.describe(workload, context.paths, started))


def post_stop(context: Context, params: dict[str, str], _: None) -> ServiceState:
    workload = cast(units.Workload, params["workload"])
    return _view(units.describe(workload, context.paths, units.stop(workload, context.paths)))


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


def post_pull(context: Context, params: dict[str, str], body: PullRequest) -> Job:
    store = _store(context)
    if body.upload is not None:
        return _pull_upload(context, _caller(params), body, store)
    reference = cast(str, body.reference)  # the request holds one of the two
    if sources.is_local(reference):
        raise die(
            f"'{reference}' is a path: bootlabd reads no one's files for them",
            hint="upload it (POST /v1/uploads, as `bootlab model pull PATH` does) or use "
            "docker://REGISTRY/REPO:TAG, oci://..., hf://ORG/REPO[@REV]",
            exit_code=Exit.USAGE,
        )
    settings = config.load(context.paths)
    name = check_name(body.name or sources.default_name(reference))
    options = sources.PullOptions(
        tls_verify=body.tls_verify, hf_endpoint=settings.models.hf_endpoint
    )

    def work(progress: Progress) -> Model:
        record = sources.pull(
            reference, name, store, context.paths, progress=progress, options=options
        )
        return _model(store, record)

    return context.jobs.start("pull", f"{reference} as {name}", work)


def _pull_upload(context: Context, uid: int, body: PullRequest, store: Store) -> Job:
    """A model the CLI uploaded: its files handed to the store (moved, not copied)."""
    staged = context.uploads.claim(cast(str, body.upload), uid)
    with context.uploads.used(staged, keep=True):
        name = check_name(body.name or sources.default_name(staged.origin))

    def work(progress: Progress) -> Model:
        record = local.pull(
            str(staged.path), name, store, progress=progress, move=True, origin=staged.origin
        )
        return _model(store, record)

    return _upload_job(context, staged, "pull", f"{staged.origin} as {name}", work)


def _upload_job(
    context: Context,
    staged: uploads_.Staged,
    kind: Literal["pull", "generate"],
    what: str,
    work: Callable[[Progress], Any],
) -> Job:
    """A job that uses an upload, removed when the job ends (at once if the same job is
    already running and is joined instead)."""

    def run(progress: Progress) -> Any:
        with context.uploads.used(staged):
            return work(progress)

    return context.jobs.start(kind, what, run, dropped=lambda: context.uploads.release(staged))


def post_upload(
    context: Context, params: dict[str, str], streamed: Streamed[UploadRequest]
) -> Upload:
    query = streamed.query
    staged = context.uploads.receive(
        streamed.body,
        uid=_caller(params),
        origin=query.origin,
        kind=query.kind,
        declared=query.size,
    )
    return Upload(**{name: getattr(staged, name) for name in Upload.model_fields})


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
    uploads, upload_bytes = context.uploads.sweep()
    return GcResult(
        blobs=report.blobs,
        snapshots=report.snapshots,
        partials=report.partials + uploads,
        bytes_freed=report.bytes_freed + upload_bytes,
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
    staged = context.uploads.claim(body.upload, _caller(params), "file")
    with context.uploads.used(staged):
        name = body.name or Path(staged.origin).stem
        imported = datasets.import_file(
            context.paths.state, staged.path, name, context=body.context, origin=staged.origin
        )
    return DatasetView(**asdict(imported))


def post_generate(context: Context, params: dict[str, str], body: GenerateRequest) -> Job:
    """Synthetic data as a job: the uploaded taxonomy's leaves (its git history came along)
    through the teacher, the output kept as datasets NAME-knowledge and NAME-skills."""
    from bootlab.sdg import generate, job  # noqa: PLC0415 - the generator, only here

    name = check_name(body.name)
    settings = generate.Settings(rounds=body.rounds, concurrency=body.concurrency, judge=body.judge)
    key = body.api_key.get_secret_value() if body.api_key else None
    staged = context.uploads.claim(body.upload, _caller(params), "directory")
    with context.uploads.used(staged, keep=True):
        teacher = job.teacher(context.paths, body.endpoint, body.model, key)
        source = staged.inside(body.taxonomy)
        what, work = job.plan(
            context.paths,
            name,
            source,
            teacher,
            ref=body.ref,
            every_leaf=body.all,
            settings=settings,
        )

    def views(progress: Progress) -> list[DatasetView]:
        return [DatasetView(**asdict(d)) for d in work(progress)]

    return _upload_job(context, staged, "generate", staged.named(what), views)


# Path parameters that take only some values, in whichever route they stand.
_ALLOWED: dict[str, tuple[str, ...]] = {"workload": tuple(units.WORKLOADS)}


def _route(method: str, path: str, summary: str, handler: Handler) -> Route:
    """A route of this API version: the table's paths leave the /v1 out."""
    names = re.findall(r"\{(\w+)\}", path)
    allowed = {name: _ALLOWED[name] for name in names if name in _ALLOWED}
    return Route(method, f"/{API_VERSION}{path}", summary, handler, allowed)


# Named as the HTTP methods, so that the table reads like the requests it answers.
def GET(path: str, summary: str, handler: Handler) -> Route:
    return _route("GET", path, summary, handler)


def POST(path: str, summary: str, handler: Handler) -> Route:
    return _route("POST", path, summary, handler)


# A start or stop is queued as a systemd job: the answer comes at once and carries the job;
# the caller polls the service until the job has ended (bootlab serve|train start does).

ROUTES: tuple[Route, ...] = (
    GET("/status", "Appliance status at a glance", get_status),
    GET("/system/info", "Hardware: GPUs, CPU, memory, disk", get_system_info),
    GET("/auth", "Registries logged in to (never secrets)", get_auth),
    POST("/auth/login", "Check credentials, then store them for podman and bootc", post_login),
    POST("/auth/logout", "Forget a registry's credentials", post_logout),
    GET("/config", "Settings in effect", get_config),
    POST("/config/init", "Write /etc/bootlab/config.yaml for this machine", post_config_init),
    GET("/services/{workload}", "State of the serve or train service", get_service),
    POST("/services/{workload}/start", "Start serve or train, stopping the other", post_start),
    POST("/services/{workload}/stop", "Stop serve or train", post_stop),
    GET("/models", "Models in the store", get_models),
    POST("/models/pull", "Pull a model (a job: poll /v1/jobs/{id})", post_pull),
    POST("/models/push", "Push a model as an OCI artifact (a job)", post_push),
    POST("/models/gc", "Free what no model uses", post_gc),
    GET("/models/{name}", "One model, file by file", get_model),
    POST("/models/{name}/verify", "Re-hash a model's files", post_verify),
    POST("/models/{name}/remove", "Remove a name (gc frees the space)", post_remove),
    GET("/jobs/{id}", "Progress of a pull or push", get_job),
    GET("/datasets", "Training datasets", get_datasets),
    POST("/uploads", "Stage a file or tree (a tar stream) for pull, import, generate", post_upload),
    POST("/datasets/import", "Validate a messages JSONL file, then keep it", post_dataset_import),
    GET("/datasets/{name}", "One dataset", get_dataset),
    POST("/datasets/generate", "Synthetic data from a taxonomy through a teacher", post_generate),
    GET("/jobs/{id}/wait", f"The job once it ends, or after {WAIT_S}s", get_job_wait),
)
