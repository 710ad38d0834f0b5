"""One module per model source; each only fetches into the store. `pull` picks one from the
reference: docker:// or oci:// (a registry), hf:// (Hugging Face), or a local path."""

from __future__ import annotations

from dataclasses import dataclass

from bootlab.paths import Paths
from bootlab.store.fetch import Progress
from bootlab.store.layout import ModelRecord, Store


@dataclass(frozen=True)
class PullOptions:
    tls_verify: bool = True
    hf_endpoint: str | None = None


def default_name(reference: str) -> str:
    """`docker://quay.io/org/granite-7b:1.2` → `granite-7b`; `hf://org/repo@rev` → `repo`."""
    tail = reference.rstrip("/").split("://", 1)[-1].rsplit("/", 1)[-1]
    for separator in ("@", ":"):
        tail = tail.split(separator, 1)[0]
    return tail.removesuffix(".gguf") or "model"


def is_local(reference: str) -> bool:
    return not reference.startswith(("docker://", "oci://", "hf://"))


def pull(
    reference: str,
    name: str,
    store: Store,
    paths: Paths,
    *,
    progress: Progress,
    options: PullOptions,
) -> ModelRecord:
    from bootlab.store.sources import hf, local, registry  # noqa: PLC0415 - one per use

    if reference.startswith(("docker://", "oci://")):
        return registry.pull(
            reference, name, store, paths, progress=progress, tls_verify=options.tls_verify
        )
    if reference.startswith("hf://"):
        return hf.pull_hf(reference, name, store, paths, progress, endpoint=options.hf_endpoint)
    return local.pull(reference, name, store, progress=progress)
