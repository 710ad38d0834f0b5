"""Reboots: what the appliance was doing comes back after `systemctl reboot` — a training job
resumes at its last checkpoint with the losses of a run never interrupted, a configured model
is served again, and an idle appliance stays idle. The desired state lives in
/var/lib/bootlab/desired.json and bootlab-restore.service starts it at boot."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support.tiny_model import tiny_model
from tests.support.train_data import job_yaml, write
from tests.support.vm import Guest

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def stocked(guest: Guest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    """The guest with the tiny model (both forms) and a small dataset in its store."""
    work = tmp_path_factory.mktemp("stock")
    hf, gguf = tiny_model()
    guest.put(hf, "/root/tiny")
    guest.put(gguf, "/root/tiny.gguf")
    guest.put(write(work / "knowledge.jsonl", "knowledge", 48), "/root/knowledge.jsonl")
    guest.ssh("bootlab model pull /root/tiny --name tiny")
    guest.ssh("bootlab model pull /root/tiny.gguf --name tiny-gguf")
    guest.ssh("bootlab data import /root/knowledge.jsonl --name knowledge")
    yield guest
    guest.ssh("bootlab train stop; bootlab serve stop", check=False)


def _desired(guest: Guest) -> str:
    text = guest.ssh("cat /var/lib/bootlab/desired.json 2>/dev/null || echo '{}'").stdout
    return str(json.loads(text).get("workload", "idle"))


def _active(guest: Guest, unit: str) -> str:
    return guest.ssh(f"systemctl is-active {unit}", check=False).stdout.strip()


def _training(guest: Guest) -> dict[str, object]:
    state = json.loads(guest.ssh("bootlab train status --json").stdout)
    return dict(state.get("training") or {})


def _history(guest: Guest, job: str) -> list[tuple[int, int, float]]:
    result = json.loads(guest.ssh(f"cat /var/lib/bootlab/checkpoints/{job}/result.json").stdout)
    return [(int(p), int(s), float(loss)) for p, s, loss in result["history"]]


def test_an_idle_appliance_stays_idle(guest: Guest) -> None:
    assert _desired(guest) == "idle"
    guest.reboot()
    assert _active(guest, "bootlab-restore.service") in ("inactive", "active")
    restored = guest.ssh("journalctl -b -u bootlab-restore.service --no-pager -o cat").stdout
    assert "nothing to start" in restored
    assert _active(guest, "bootlab-serve.service") == "inactive"
    assert _active(guest, "bootlab-train.service") == "inactive"


def test_a_configured_model_is_served_again_after_a_reboot(stocked: Guest) -> None:
    guest = stocked
    guest.ssh(
        "mkdir -p /etc/bootlab && printf 'serve:\\n  model: tiny-gguf\\n  port: 8000\\n"
        "  max_model_len: 256\\n' > /etc/bootlab/config.yaml"
    )
    guest.ssh("bootlab serve start")
    assert _desired(guest) == "serve"
    guest.reboot()
    guest.wait_for("serving after the reboot", "systemctl is-active --quiet bootlab-serve")
    answer = guest.ssh("bootlab chat -q 'hello' --max-tokens 4")
    assert answer.stdout.strip(), answer.stderr
    guest.ssh("bootlab serve stop")
    assert _desired(guest) == "idle"


def test_training_interrupted_by_a_reboot_resumes_with_the_same_losses(stocked: Guest) -> None:
    guest = stocked
    # The reference: the same job, never interrupted, on the same (virtual) CPU.
    guest.ssh(f"cat > /root/whole.yaml <<'EOF'\n{job_yaml('whole', 2, ('knowledge',))}EOF")
    guest.ssh(f"cat > /root/cut.yaml <<'EOF'\n{job_yaml('cut', 2, ('knowledge',))}EOF")
    guest.ssh("bootlab train start --job /root/whole.yaml --follow", timeout=1800)
    whole = _history(guest, "whole")

    guest.ssh("bootlab train start --job /root/cut.yaml")
    guest.wait_for(
        "a checkpoint of the job",
        "ls /var/lib/bootlab/checkpoints/cut/resume | grep -q '^00-0000000[2-9]'",
        timeout=1800,
    )
    assert _desired(guest) == "train"
    guest.reboot()
    guest.wait_for(
        "training to finish after the reboot",
        "test -f /var/lib/bootlab/checkpoints/cut/result.json",
        timeout=1800,
    )
    log = guest.ssh("journalctl -b -u bootlab-train --no-pager -o cat").stdout
    assert "resuming at phase 1 step" in log, log[-3000:]
    resumed = _history(guest, "cut")
    assert [(p, s) for p, s, _ in resumed] == [(p, s) for p, s, _ in whole]
    for (_, step, expected), (_, _, got) in zip(whole, resumed, strict=True):
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-6), step
    assert _desired(guest) == "idle"  # the job is done: the next boot trains nothing
    assert "tiny-cut" in guest.ssh("bootlab model list").stdout
