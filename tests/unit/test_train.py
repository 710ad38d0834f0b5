"""Training's appliance side, without torch: the job settings (file:line errors), the memory
and ZeRO estimate, checkpoint directories (whole or absent, never another job's), the batch
order, and every preflight refusal, each with its message."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from bootlab import config, datasets
from bootlab.api import TrainingState
from bootlab.errors import BootlabError
from bootlab.paths import Paths
from bootlab.store.fetch import Progress
from bootlab.store.layout import model_store
from bootlab.store.sources import local
from bootlab.sysinfo import Gpu, SystemInfo, probe
from bootlab.train import estimate, preflight, supervise
from bootlab.train.batching import epoch_order, micro_batches, split
from bootlab.train.checkpoint import CheckpointError, Checkpoints
from bootlab.train.plan import Plan
from bootlab.train.supervise import Relay, worker_env
from bootlab.train.tokens import IGNORE, sample
from bootlab.workload import state

from tests.support.train_data import write

pytestmark = pytest.mark.unit

LLAMA_7B = {
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "vocab_size": 32000,
    "dtype": "bfloat16",
    "max_position_embeddings": 4096,
}


# Settings ------------------------------------------------------------------------------------


def test_a_job_file_is_checked_with_its_own_line_numbers() -> None:
    text = "train:\n  model: tiny\n  phases:\n    - name: k\n      data: d\n      learning_rte: 1\n"
    with pytest.raises(BootlabError) as raised:
        config.load_job(text, "/root/job.yaml")
    assert "/root/job.yaml:6: phases.0.learning_rte: unknown setting" in raised.value.message
    assert "did you mean 'learning_rate'" in raised.value.message


def test_a_job_file_speaks_like_the_image_spec() -> None:
    """One explainer for the config, job files and the spec: a missing key and a count of the
    other problems read the same everywhere."""
    text = "phases:\n  - name: k\n  - {name: s, data: d, epochs: 0}\n"
    with pytest.raises(BootlabError) as raised:
        config.load_job(text, "job.yaml")
    first, *rest = raised.value.message.splitlines()
    assert first == "job.yaml:2: phases.0.data: required key is missing (and 1 more)"
    assert rest == ["  job.yaml:3: phases.1.epochs: Input should be greater than or equal to 1"]


def test_a_job_file_replaces_the_configs_data() -> None:
    job = config.load_job("phases:\n  - {name: k, data: d}\n", "job.yaml")
    assert job["data"] is None
    merged = config.Train.model_validate({**config.Train(data="old").model_dump(), **job})
    assert [p.data for p in merged.resolved_phases()] == ["d"]


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"data": "a", "phases": [{"name": "k", "data": "b"}]}, "either data (one phase) or"),
        ({"phases": [{"name": "k", "data": "a"}, {"name": "k", "data": "b"}]}, "repeat: k, k"),
        ({"max_seq_len": 4096, "max_batch_len": 1024}, "must hold the longest sample"),
    ],
)
def test_contradicting_settings_are_refused(
    tmp_path: Path, train: dict[str, object], message: str
) -> None:
    paths = Paths(tmp_path)
    paths.config_file.parent.mkdir(parents=True)
    paths.config_file.write_text(json.dumps({"train": train}))
    with pytest.raises(BootlabError) as raised:
        config.load(paths)
    assert message in raised.value.message
    assert str(paths.config_file) in raised.value.message


def test_a_train_start_job_persists_and_lays_over_the_config(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    override = state.override_file(paths, "train")
    assert override.is_relative_to(paths.state)  # /var: the job survives a reboot
    override.parent.mkdir(parents=True)
    override.write_text(json.dumps({"model": "m", "phases": [{"name": "k", "data": "d"}]}))
    merged = state.with_override(config.Config(), paths, "train")
    assert merged.train.model == "m"
    assert merged.train.output_name() == "m-tuned" == merged.train.job_name()


# Estimates -----------------------------------------------------------------------------------


def test_full_fine_tuning_needs_sixteen_bytes_a_parameter_and_lora_far_less() -> None:
    weights = 7 * 10**9 * 2
    full = estimate.estimate(LLAMA_7B, weights, max_batch_len=4096, lora_rank=None)
    lora = estimate.estimate(LLAMA_7B, weights, max_batch_len=4096, lora_rank=8, bf16=True)
    assert full.params == 7 * 10**9
    assert full.model_state == 16 * full.params
    assert lora.trainable < full.params / 100
    assert lora.model_state < full.model_state / 7
    longer = estimate.estimate(LLAMA_7B, weights, max_batch_len=8192, lora_rank=None)
    assert longer.activations == 2 * full.activations


def test_zero_shards_only_as_much_as_the_gpus_need() -> None:
    weights = 7 * 10**9 * 2
    need = estimate.estimate(LLAMA_7B, weights, max_batch_len=2048, lora_rank=None, bf16=True)
    gib = 2**30
    roomy = estimate.zero_plan(need, gpus=8, vram=600 * gib)
    assert roomy is not None and roomy.stage == 0
    tight = estimate.zero_plan(need, gpus=8, vram=80 * gib)
    assert tight is not None and 1 <= tight.stage <= 3 and not tight.offload
    assert tight.per_gpu <= 80 * gib * estimate.USABLE
    single = estimate.zero_plan(need, gpus=1, vram=80 * gib)
    assert single is not None and single.offload  # one GPU: only offloading can make room
    assert estimate.zero_plan(need, gpus=1, vram=24 * gib) is None


# Checkpoints ---------------------------------------------------------------------------------


def test_a_checkpoint_directory_belongs_to_one_job(tmp_path: Path) -> None:
    root = tmp_path / "job"
    Checkpoints(root, "job", "aaa").claim()
    Checkpoints(root, "job", "aaa").claim()  # the same job again: resumes
    with pytest.raises(CheckpointError) as raised:
        Checkpoints(root, "job", "bbb").claim()
    assert "made with other settings" in raised.value.message
    assert "train.job" in raised.value.hint
    assert json.loads((root / "job.json").read_text())["fingerprint"] == "aaa"


def test_a_directory_that_is_not_ours_is_left_alone(tmp_path: Path) -> None:
    root = tmp_path / "job"
    root.mkdir()
    (root / "precious.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError) as raised:
        Checkpoints(root, "job", "aaa").claim()
    assert "not a bootlab checkpoint directory" in raised.value.message
    assert (root / "precious.bin").read_bytes() == b"x"
    assert not (root / "job.json").exists()


def test_checkpoints_are_whole_or_absent(tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path / "job", "job", "aaa")
    checkpoints.claim()

    def half(into: Path) -> None:
        (into / "optimizer.pt").write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        checkpoints.save(checkpoints.resume_name(0, 4), half)
    assert checkpoints.latest() is None  # nothing half-written is a checkpoint
    assert not [path for path in checkpoints.root.rglob(".*") if "partial" in path.name]
    stale = checkpoints.resume_dir / ".partial-00-00000002"  # an older bootlab's, killed
    stale.mkdir()
    checkpoints.claim()  # the next start sweeps it
    assert not stale.exists()

    for step in (2, 4, 6):
        checkpoints.save(
            checkpoints.resume_name(0, step),
            lambda into, s=step: (into / "trainer_state.json").write_text(
                json.dumps({"format": 1, "fingerprint": "aaa", "step": s})
            ),
        )
        checkpoints.prune(2)
    assert [p.name for p in checkpoints.resumable()] == ["00-00000004", "00-00000006"]
    latest = checkpoints.latest()
    assert latest is not None and latest[1]["step"] == 6


def test_a_damaged_latest_checkpoint_is_reported_not_skipped(tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path / "job", "job", "aaa")
    checkpoints.claim()
    damaged = checkpoints.resume_name(1, 8)
    damaged.mkdir(parents=True)
    (damaged / "trainer_state.json").write_text("{not json")
    with pytest.raises(CheckpointError) as raised:
        checkpoints.latest()
    assert str(damaged) in raised.value.message
    assert "move" in raised.value.hint
    assert damaged.exists()


# Batches -------------------------------------------------------------------------------------


def test_the_order_of_samples_depends_only_on_seed_phase_and_epoch() -> None:
    train, held = split(100, 0.1, seed=42, phase=0)
    assert len(held) == 10 and sorted(train + held) == list(range(100))
    assert split(100, 0.1, seed=42, phase=0) == (train, held)
    assert split(2, 0.01, seed=1, phase=0)[1] != []  # one held out as soon as there are two
    assert split(1, 0.5, seed=1, phase=0) == ([0], [])
    first = epoch_order(train, 42, 0, 0)
    assert first == epoch_order(train, 42, 0, 0)
    assert first != epoch_order(train, 42, 0, 1)
    assert sorted(first) == train


def test_micro_batches_pack_samples_in_order_within_the_token_budget() -> None:
    samples = [sample(range(n), range(n)) for n in (50, 40, 30, 70, 10, 20)]

    def shape(budget: int) -> list[tuple[int, list[list[int]]]]:
        return [
            (b.width, [[len(s.input_ids) for s in row] for row in b.rows])
            for b in micro_batches(samples, budget)
        ]

    # Rows as wide as the longest sample rounded up to 64 (70 → 128), filled first fit,
    # longest first; as many rows a micro-batch as the budget holds.
    assert shape(256) == [(128, [[70, 50], [40, 30, 20, 10]])]
    assert shape(128) == [(128, [[70, 50]]), (128, [[40, 30, 20, 10]])]
    # Never wider than the budget (which holds the longest sample: the config checks).
    assert shape(100) == [(100, [[70, 30]]), (100, [[50, 40, 10]]), (100, [[20]])]
    assert micro_batches(samples, 256) == micro_batches(samples, 256)
    assert sample([1, 2, 3], [IGNORE, 2, 3]).trained_tokens == 2


# Preflight -----------------------------------------------------------------------------------


@pytest.fixture
def appliance(tmp_path: Path) -> Paths:
    """An appliance root with a model (a config.json and a weights file; preflight reads no
    weights) and a dataset; the ML venv is a directory with transformers' marker."""
    paths = Paths(tmp_path / "root")
    site = paths.ml_venv / "lib" / "python3.11" / "site-packages" / "transformers"
    site.mkdir(parents=True)
    (site / "__init__.py").touch()
    (paths.ml_venv / "bin").mkdir()
    (paths.ml_venv / "bin" / "python").touch()
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(
        json.dumps(
            {
                **LLAMA_7B,
                "hidden_size": 256,
                "num_hidden_layers": 2,
                "vocab_size": 512,
                "dtype": "float32",
                "max_position_embeddings": 1024,
            }
        )
    )
    (model / "model.safetensors").write_bytes(b"\0" * 4096)
    local.pull(str(model), "tiny", model_store(paths), progress=Progress())
    datasets.import_file(paths.state, write(tmp_path / "k.jsonl", "knowledge", 8), "knowledge")
    return paths


def cpu_only(paths: Paths) -> SystemInfo:
    return probe(paths.state).model_copy(update={"gpus": ()})


def plan_for(paths: Paths, train: dict[str, object], system: SystemInfo | None = None) -> Plan:
    settings = config.Config(train=config.Train.model_validate(train))
    return preflight.plan(settings, paths, system or cpu_only(paths))[1]


def test_a_good_job_becomes_a_plan_for_the_worker(appliance: Paths) -> None:
    plan = plan_for(appliance, {"model": "tiny", "data": "knowledge", "max_seq_len": 512})
    assert plan.job == plan.output == "tiny-tuned"
    assert plan.phases[0].data.endswith("datasets/knowledge/data.jsonl")
    assert Path(plan.checkpoints, "job.json").exists()
    assert Plan.from_json(plan.to_json()) == plan
    again = plan_for(
        appliance, {"model": "tiny", "data": "knowledge", "max_seq_len": 512, "checkpoint_every": 7}
    )
    assert again.fingerprint == plan.fingerprint  # where checkpoints go changes no number
    with pytest.raises(BootlabError) as raised:  # a learning rate does
        plan_for(
            appliance,
            {
                "model": "tiny",
                "phases": [{"name": "train", "data": "knowledge", "learning_rate": 0.1}],
                "max_seq_len": 512,
            },
        )
    assert "made with other settings" in raised.value.message
    assert raised.value.exit_code == 78


@pytest.mark.parametrize(
    ("train", "message", "hint"),
    [
        ({"data": "knowledge"}, "nothing to train: train.model is not set", "bootlab model pull"),
        ({"model": "nope", "data": "knowledge"}, "names 'nope', which is not in the model", "pull"),
        ({"model": "tiny"}, "no training data", "bootlab data import"),
        ({"model": "tiny", "data": "skills"}, "dataset 'skills', which is not imported", "import"),
        (
            {"model": "tiny", "data": "knowledge", "max_seq_len": 2048, "max_batch_len": 4096},
            "above what model 'tiny' supports (1024",
            "max_seq_len: 1024",
        ),
        (
            {"model": "tiny", "data": "knowledge", "max_seq_len": 512, "max_batch_len": 10**9},
            "of memory",
            "train.lora",
        ),
        (
            {"model": "tiny", "data": "knowledge", "max_seq_len": 512, "keep_checkpoints": 10**9},
            "checkpoints need about",
            "keep_checkpoints",
        ),
        (
            {"model": "tiny", "data": "knowledge", "max_seq_len": 512, "gpus": 2},
            "train.gpus is 2, but this machine has 0 GPU(s)",
            "auto",
        ),
    ],
)
def test_preflight_refuses_with_a_reason_and_a_way_out(
    appliance: Paths, train: dict[str, object], message: str, hint: str
) -> None:
    with pytest.raises(BootlabError) as raised:
        plan_for(appliance, train)
    assert message in raised.value.message
    assert hint in (raised.value.hint or "")
    assert raised.value.exit_code == 78


def test_preflight_plans_zero_for_the_gpus_it_has(appliance: Paths) -> None:
    gpu = Gpu(vendor="nvidia", index=0, name="NVIDIA H100", model="H100", memory_mib=81559)
    system = cpu_only(appliance).model_copy(update={"gpus": (gpu,)})
    plan = plan_for(appliance, {"model": "tiny", "data": "knowledge", "max_seq_len": 512}, system)
    assert (plan.gpus, plan.zero_stage, plan.offload) == (1, 0, "none")
    with pytest.raises(BootlabError) as raised:
        plan_for(
            appliance,
            {"model": "tiny", "data": "knowledge", "max_seq_len": 512, "processes": 2},
            system,
        )
    assert "one process a GPU" in raised.value.message
    assert "train.gpus: 0" in (raised.value.hint or "")


def test_a_cpu_job_on_a_gpu_machine_hides_the_gpus_from_its_workers(appliance: Paths) -> None:
    """Seen on an H200: two CPU ranks, and FSDP put rank 1 on CUDA device 1, which is not
    there. gpus: 0 means no GPU for any rank."""
    gpu = Gpu(vendor="nvidia", index=0, name="NVIDIA H200", model="H200", memory_mib=143771)
    system = cpu_only(appliance).model_copy(update={"gpus": (gpu,)})
    job = {"model": "tiny", "data": "knowledge", "max_seq_len": 512, "job": "cpu-ranks"}
    on_cpu = plan_for(appliance, {**job, "gpus": 0, "processes": 2}, system)
    assert (on_cpu.gpus, on_cpu.processes) == (0, 2)
    assert worker_env(on_cpu, "/run/events")["CUDA_VISIBLE_DEVICES"] == ""
    on_gpu = plan_for(appliance, {**job, "job": "gpu"}, system)
    assert on_gpu.gpus == 1
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")  # an admin's choice stays
    assert worker_env(on_gpu, "/run/events").get("CUDA_VISIBLE_DEVICES") == inherited


# A worker's step event (without its "event" key), as the supervisor relays it.
STEP = {
    "phase": "train", "phase_index": 0, "phases": 1, "epoch": 1, "step": 3, "steps": 9,
    "loss": 2.5, "learning_rate": 1e-4, "tokens": 999, "tokens_per_s": 500.0,
    "step_s": 0.5, "eta_s": 3.0,
}  # fmt: skip


def test_the_status_file_is_what_the_daemon_reads(appliance: Paths) -> None:
    """The API refuses unknown keys: a key the supervisor adds to its status file and the
    API lacks makes `bootlab train status` show no training at all (it did, once)."""
    plan = plan_for(appliance, {"model": "tiny", "data": "knowledge", "max_seq_len": 512})
    relay = Relay(plan, appliance)
    where = "CPU (1 process), fp32"
    relay.handle({"event": "ready", "job": plan.job, "resumed": None, "samples": [40]})
    relay.handle({"event": "ready", "job": plan.job, "samples": [40], "device": where})
    relay.handle({"event": "step", **STEP})
    read = TrainingState.model_validate_json(state.train_file(appliance).read_bytes())
    assert (read.job, read.state, read.device) == (plan.job, "running", where)
    assert read.progress is not None and read.progress.step == 3


def test_a_stop_says_it_saves_a_checkpoint_and_extends_the_timeout_while_it_grows(
    appliance: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bootlab train stop` shows these lines while it waits; systemd kills the unit at
    TimeoutStopSec= unless told that the checkpoint is still being written."""
    said: list[str] = []
    monkeypatch.setattr(supervise.journal, "notify", said.append)
    monkeypatch.setattr(supervise, "EXTEND_EVERY_S", 0.0)
    monkeypatch.setattr(supervise, "_cgroup_written", lambda: 0)  # this test's own cgroup
    plan = plan_for(appliance, {"model": "tiny", "data": "knowledge", "max_seq_len": 512})
    relay = Relay(plan, appliance)
    relay.handle({"event": "ready", "job": plan.job, "samples": [40], "device": "CPU"})
    relay.handle({"event": "saving", "path": "/c/resume/00-00000004", "phase": 0, "step": 4})
    assert said[-1] == "STATUS=saving a checkpoint at step 4 (/c/resume/00-00000004)"
    stop = relay.stop()
    assert said[-1] == "STATUS=stopping: finishing the step, then saving a checkpoint"
    relay.handle({"event": "saving", "path": "/c/resume/00-00000005", "phase": 0, "step": 5})
    assert said[-1].startswith("STATUS=stopping: saving a checkpoint at step 5")
    del said[:]
    stop.tick(heard=False)
    assert said == []  # nothing written, nothing heard: no extension
    partial = Path(plan.checkpoints) / "resume" / ".00-00000005.partial"
    (partial / "model").mkdir(parents=True)
    (partial / "model" / "model.safetensors").write_bytes(b"\0" * 100)
    stop.tick(heard=False)
    assert said == ["EXTEND_TIMEOUT_USEC=120000000"]  # the checkpoint grows
    stop.tick(heard=False)
    assert said == ["EXTEND_TIMEOUT_USEC=120000000"]  # it stopped growing
    stop.tick(heard=True)  # the worker said something: it is alive and working
    assert said[-1] == "EXTEND_TIMEOUT_USEC=120000000" and len(said) == 2
    relay.handle({"event": "checkpoint", "path": str(partial), "phase": 0, "step": 5})
    assert said[-1] == "STATUS=stopping: checkpoint saved at step 5"


def test_after_a_save_the_status_shows_the_progress_again(
    appliance: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steps are told at most every STATUS_EVERY_S, saves at once: without this, a job that
    saves often would show "saving a checkpoint" in `systemctl status` nearly all the time."""
    said: list[str] = []
    monkeypatch.setattr(supervise.journal, "notify", said.append)
    plan = plan_for(appliance, {"model": "tiny", "data": "knowledge", "max_seq_len": 512})
    relay = Relay(plan, appliance)
    relay.handle({"event": "ready", "job": plan.job, "samples": [40], "device": "CPU"})
    relay.handle({"event": "step", **STEP, "step": 2})
    progress = said[-1]
    assert progress.startswith("STATUS=phase train (1/1) step 2/9")
    relay.handle({"event": "saving", "path": "/c/resume/00-00000002", "phase": 0, "step": 2})
    assert said[-1].startswith("STATUS=saving a checkpoint at step 2")
    relay.handle({"event": "checkpoint", "path": "/c/resume/00-00000002", "phase": 0, "step": 2})
    assert said[-1] == progress


def test_what_a_stop_counts_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervise, "_cgroup_written", lambda: 7)
    root = tmp_path / "checkpoints"
    (root / "resume" / "00-00000002").mkdir(parents=True)
    (root / "resume" / "00-00000002" / "optimizer.pt").write_bytes(b"x" * 50)  # a whole one
    partial = root / "candidates" / ".knowledge-e1.partial"
    partial.mkdir(parents=True)
    (partial / "model.safetensors").write_bytes(b"x" * 30)
    assert supervise.written(root) == 30 + 7  # partial files only, and the cgroup's bytes


def test_several_processes_on_cpu_shard_the_whole_model(appliance: Paths) -> None:
    one = plan_for(appliance, {"model": "tiny", "data": "knowledge", "max_seq_len": 512})
    assert (one.processes, one.zero_stage) == (1, 0)
    two = plan_for(
        appliance,
        {"model": "tiny", "data": "knowledge", "max_seq_len": 512, "processes": 2, "job": "two"},
    )
    assert (two.processes, two.zero_stage, two.offload) == (2, 3, "none")


def test_epochs_are_selected_only_by_a_multiple_choice_benchmark(
    appliance: Paths, tmp_path: Path
) -> None:
    judged = tmp_path / "judged.jsonl"
    judged.write_text('{"question": "why?"}\n')
    with pytest.raises(BootlabError) as raised:
        plan_for(
            appliance,
            {"model": "tiny", "data": "knowledge", "max_seq_len": 512, "select_with": str(judged)},
        )
    assert "needs multiple choice" in raised.value.message
    choice = tmp_path / "choice.jsonl"
    choice.write_text('{"question": "2+2?", "choices": ["3", "4"], "answer": 1}\n')
    plan = plan_for(
        appliance,
        {
            "model": "tiny",
            "data": "knowledge",
            "max_seq_len": 512,
            "select_with": str(choice),
            "job": "selected",
        },
    )
    assert plan.selection == ({"question": "2+2?", "choices": ("3", "4"), "answer": 1},)
