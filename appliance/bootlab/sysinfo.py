"""What this machine is, for `GET /v1/system/info` and `bootlab system info`: host, CPU,
memory, disk, GPUs and the InstructLab-like hardware profile they add up to.

GPUs come from each vendor's own tool when it is installed (nvidia-smi, rocm-smi, xpu-smi),
else from sysfs. Probing never raises: a tool that fails or prints something unreadable
becomes a warning in the result.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple
from xml.etree import ElementTree

from pydantic import BaseModel, ConfigDict

from bootlab.errors import BootlabError
from bootlab.run import run

Vendor = Literal["nvidia", "amd", "intel"]

_MIB = 1024 * 1024
# nvidia-smi -q takes seconds on a large box without persistence mode; a hung driver must
# not hang the daemon's request forever.
_TIMEOUT_S = 30.0


class Gpu(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    vendor: Vendor
    index: int
    name: str  # as the tool reports it, e.g. "NVIDIA H100 80GB HBM3"
    model: str  # short model used in profile names: "H100", "MI300X", "Max 1550"
    memory_mib: int  # total VRAM; 0 when the source does not say
    uuid: str | None = None
    driver: str | None = None

    @classmethod
    def found(
        cls,
        vendor: Vendor,
        index: int,
        name: str,
        memory_mib: int,
        *,
        uuid: str | None = None,
        driver: str | None = None,
        model: str | None = None,
    ) -> Gpu:
        """A GPU as a tool or sysfs names it; its short model from the name unless known."""
        model = model or short_model(vendor, name)
        return cls(
            vendor=vendor,
            index=index,
            name=name,
            model=model,
            memory_mib=memory_mib,
            uuid=uuid,
            driver=driver,
        )


class HardwareProfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str  # "Nvidia 8x H100", "AMD 8x MI300X", "CPU only"
    vendor: Literal["nvidia", "amd", "intel", "cpu"]
    gpu_model: str | None
    gpu_count: int
    vram_mib_per_gpu: int


class SystemInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    hostname: str
    os: str
    kernel: str
    cpu_model: str
    cpu_count: int
    memory_total_mib: int
    memory_available_mib: int
    disk_path: str
    disk_total_bytes: int
    disk_free_bytes: int
    gpus: tuple[Gpu, ...]
    profile: HardwareProfile
    warnings: tuple[str, ...] = ()


# --- small helpers ----------------------------------------------------------------------------


def _clean(value: object) -> str | None:
    """A reported value, or None where the tool says it does not know."""
    text = "" if value is None else str(value).strip()
    return None if text in ("", "N/A") else text


def _int(value: object, default: int = 0) -> int:
    """The leading number of "40960 MiB", "34342961152" or 7; `default` for "N/A"."""
    found = re.search(r"\d+", str(value)) if value is not None else None
    return int(found.group()) if found else default


def _field(mapping: Mapping[str, Any], key: str) -> str | None:
    """Case-insensitive lookup: rocm-smi renamed "Card series" to "Card Series" in ROCm 6."""
    return next((_clean(v) for k, v in mapping.items() if k.lower() == key), None)


def _json_object(text: str) -> dict[str, Any]:
    """The first JSON object in `text`; tools print warnings around it (rocm-smi does)."""
    start = text.find("{")
    if start < 0:
        return {}
    try:
        data, _ = json.JSONDecoder().raw_decode(text, start)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


# Per vendor, the short model inside a reported name.
_MODEL_IN_NAME: dict[Vendor, re.Pattern[str]] = {
    # "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB", "Tesla V100S-PCIE-32GB": drop the
    # brand and everything from the memory size or form factor on.
    "nvidia": re.compile(
        r"^(?:NVIDIA\s+)?(?:Tesla\s+|GeForce\s+|Quadro\s+)?(.+?)"
        r"(?:[-\s](?:\d+GB|PCIE|SXM\d*|HBM\w*|NVL)\b.*)?$",
        re.IGNORECASE,
    ),
    "amd": re.compile(r"\b(MI\d+\w*)"),  # "Arcturus GL-XL [Instinct MI100]"
    "intel": re.compile(r"\b((?:Max|Flex) \d+)"),  # "Intel(R) Data Center GPU Max 1100"
}


def short_model(vendor: Vendor, name: str) -> str:
    """The model a profile name uses: "H100", "MI300X", "Max 1550"; else the name, unbranded."""
    found = _MODEL_IN_NAME[vendor].search(name)
    if found:
        return found.group(1)
    return re.sub(r"\((?:R|TM)\)|^(?:AMD|Intel)\s*", "", name).strip() or name


# --- one parser per vendor tool ---------------------------------------------------------------


def parse_nvidia_smi_xml(text: str) -> list[Gpu]:
    """GPUs in `nvidia-smi -q -x` output; [] for anything that is not such a document."""
    try:
        # S314: the XML comes from nvidia-smi run locally by root, not from the network, and
        # ElementTree neither fetches the DTD it names nor expands external entities.
        log = ElementTree.fromstring(text)  # noqa: S314
    except (ElementTree.ParseError, ValueError):
        return []
    if log.tag != "nvidia_smi_log":
        return []
    driver = _clean(log.findtext("driver_version"))
    gpus: list[Gpu] = []
    # Documents list GPUs in nvidia-smi's index order (PCI bus order); minor_number differs.
    for index, gpu in enumerate(log.findall("gpu")):
        name = _clean(gpu.findtext("product_name")) or "NVIDIA GPU"
        # The GPU's own fb_memory_usage, not those of its MIG slices (mig_devices/...).
        memory_mib = _int(gpu.findtext("fb_memory_usage/total"))
        uuid = _clean(gpu.findtext("uuid"))
        gpus.append(Gpu.found("nvidia", index, name, memory_mib, uuid=uuid, driver=driver))
    return gpus


def parse_rocm_smi_json(text: str) -> list[Gpu]:
    """GPUs in `rocm-smi --showproductname --showmeminfo vram ... --json` output: one "cardN"
    object per GPU plus a "system" object with the driver version."""
    data = _json_object(text)
    system = data.get("system")
    driver = _field(system, "driver version") if isinstance(system, dict) else None
    cards = sorted(
        ((int(key[4:]), card) for key, card in data.items() if re.fullmatch(r"card\d+", key)),
        key=lambda pair: pair[0],
    )
    gpus: list[Gpu] = []
    for index, card in cards:
        if not isinstance(card, dict):
            continue
        name = _field(card, "card series") or "AMD GPU"
        memory_mib = _int(_field(card, "vram total memory (b)")) // _MIB
        uuid = _field(card, "unique id")
        gpus.append(Gpu.found("amd", index, name, memory_mib, uuid=uuid, driver=driver))
    return gpus


def parse_xpu_smi_json(text: str) -> list[Gpu]:
    """GPUs in `xpu-smi discovery -j` (a "device_list", without memory sizes) or in
    `xpu-smi discovery -d N -j` (one device, with "memory_physical_size_byte")."""
    data = _json_object(text)
    devices = data.get("device_list", [data] if "device_id" in data else [])
    if not isinstance(devices, list):
        return []
    gpus: list[Gpu] = []
    for position, device in enumerate(d for d in devices if isinstance(d, dict)):
        # Virtual functions are slices of a physical GPU that is listed too.
        if device.get("device_type", "GPU") != "GPU" or (
            device.get("device_function_type") == "virtual"
        ):
            continue
        name = _field(device, "device_name") or "Intel GPU"
        gpus.append(
            Gpu.found(
                "intel",
                _int(device.get("device_id"), default=position),
                name,
                _int(device.get("memory_physical_size_byte")) // _MIB,
                uuid=_field(device, "uuid"),
                driver=_field(device, "driver_version"),
            )
        )
    return gpus


class _Source(NamedTuple):
    command: str  # split on spaces into argv
    parse: Callable[[str], list[Gpu]]
    # Where the list lacks memory sizes: a per-GPU command, "{index}" filled in.
    detail: str | None = None
    # Without the tool: the PCI vendor ID to look for in sysfs, and device ID -> model.
    pci_vendor: str | None = None
    pci_models: Mapping[str, str] = {}


# Data-center device IDs from pci.ids, so a sysfs-only probe still names the profile.
_AMD_MODELS = {
    "0x738c": "MI100",
    "0x738e": "MI100",
    "0x7408": "MI250X",
    "0x740c": "MI250X/MI250",
    "0x740f": "MI210",
    "0x74a0": "MI300A",
    "0x74a1": "MI300X",
    "0x74a5": "MI325X",
}
_INTEL_MODELS = {
    "0x0bd5": "Max 1550",
    "0x0bd6": "Max 1550",
    "0x0b69": "Max 1450",
    "0x0bd7": "Max 1350",
    "0x0bd8": "Max 1350",
    "0x0bd9": "Max 1100",
    "0x0bda": "Max 1100",
    "0x0bdb": "Max 1100",
    "0x56c0": "Flex 170",
    "0x56c1": "Flex 140",
}

# NVIDIA has no sysfs fallback: its VRAM size is not in sysfs, and without nvidia-smi the
# driver stack needed to serve on the GPU is missing anyway.
_SOURCES: dict[Vendor, _Source] = {
    "nvidia": _Source("nvidia-smi -q -x", parse_nvidia_smi_xml),
    "amd": _Source(
        "rocm-smi --showproductname --showmeminfo vram --showuniqueid --showdriverversion --json",
        parse_rocm_smi_json,
        pci_vendor="0x1002",
        pci_models=_AMD_MODELS,
    ),
    "intel": _Source(
        "xpu-smi discovery -j",
        parse_xpu_smi_json,
        detail="xpu-smi discovery -d {index} -j",
        pci_vendor="0x8086",
        pci_models=_INTEL_MODELS,
    ),
}

_LABELS: dict[Vendor, str] = {"nvidia": "Nvidia", "amd": "AMD", "intel": "Intel"}


def profile_for(gpus: Sequence[Gpu]) -> HardwareProfile:
    """The profile of the largest group of one model of the first GPU's vendor; other GPUs
    (a mixed box) stay listed in SystemInfo.gpus but do not make the name unreadable."""
    if not gpus:
        return HardwareProfile(
            name="CPU only", vendor="cpu", gpu_model=None, gpu_count=0, vram_mib_per_gpu=0
        )
    vendor = gpus[0].vendor
    same_vendor = [gpu for gpu in gpus if gpu.vendor == vendor]
    # most_common keeps first-seen order among equal counts, so ties go to the first GPU.
    model, count = Counter(gpu.model for gpu in same_vendor).most_common(1)[0]
    return HardwareProfile(
        name=f"{_LABELS[vendor]} {count}x {model}",
        vendor=vendor,
        gpu_model=model,
        gpu_count=count,
        # What every GPU of the group has, so a plan that fits one fits all.
        vram_mib_per_gpu=min(gpu.memory_mib for gpu in same_vendor if gpu.model == model),
    )


# --- probing ----------------------------------------------------------------------------------


def _read(path: Path, warnings: list[str] | None = None) -> str:
    """The file's text, or "" (and a warning where asked) when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        if warnings is not None:
            warnings.append(f"cannot read {path}: {error.strerror or error}")
        return ""


def _pairs(text: str, separator: str) -> Iterator[tuple[str, str]]:
    """`key<separator>value` lines, both sides stripped (cpuinfo, meminfo, os-release)."""
    for line in text.splitlines():
        key, found, value = line.partition(separator)
        if found:
            yield key.strip(), value.strip()


def _run_tool(
    argv: Sequence[str], parse: Callable[[str], list[Gpu]], warnings: list[str]
) -> list[Gpu]:
    tool = argv[0]
    try:
        result = run(argv, capture=True, check=False, timeout=_TIMEOUT_S)
    except (BootlabError, OSError) as error:  # timeout, or not executable after all
        warnings.append(f"{tool} failed: {error}")
        return []
    if result.returncode != 0:
        said = (result.stderr or result.stdout).decode(errors="replace").strip().splitlines()
        warnings.append(f"{tool} failed (exit {result.returncode}): {said[-1] if said else ''}")
        return []
    gpus = parse(result.stdout.decode(errors="replace"))
    if not gpus:
        warnings.append(f"{tool} printed no GPU that bootlab could read")
    return gpus


def _with_detail(gpu: Gpu, source: _Source, warnings: list[str]) -> Gpu:
    if source.detail is None or gpu.memory_mib:
        return gpu
    found = _run_tool(source.detail.format(index=gpu.index).split(), source.parse, warnings)
    if not found:
        return gpu
    return gpu.model_copy(
        update={"memory_mib": found[0].memory_mib, "driver": found[0].driver or gpu.driver}
    )


def _sysfs_gpus(vendor: Vendor, source: _Source, root: Path) -> list[Gpu]:
    cards = [
        card
        for card in (root / "sys/class/drm").glob("card*")
        if re.fullmatch(r"card\d+", card.name)  # not connectors such as card0-DP-1
    ]
    gpus: list[Gpu] = []
    for card in sorted(cards, key=lambda card: int(card.name[4:])):
        device = card / "device"
        if _read(device / "vendor").strip() != source.pci_vendor:
            continue
        if not _read(device / "class").strip().startswith("0x03"):  # display controllers
            continue
        pci_id = _read(device / "device").strip()
        model = source.pci_models.get(pci_id)
        # Intel's integrated graphics is a display-class 0x8086 device with a render node
        # too; only the data-center parts in the table count (xpu-smi lists only those).
        if vendor == "intel" and model is None:
            continue
        name = _read(device / "product_name").strip() or f"{_LABELS[vendor]} GPU [{pci_id}]"
        # amdgpu reports its VRAM here; i915/xe have no such file, so Intel shows 0.
        memory_mib = _int(_read(device / "mem_info_vram_total")) // _MIB
        gpus.append(Gpu.found(vendor, len(gpus), name, memory_mib, model=model))
    return gpus


def _probe_gpus(root: Path, warnings: list[str]) -> list[Gpu]:
    gpus: list[Gpu] = []
    for vendor, source in _SOURCES.items():
        argv = source.command.split()
        if shutil.which(argv[0]):
            found = _run_tool(argv, source.parse, warnings)
            gpus += [_with_detail(gpu, source, warnings) for gpu in found]
        elif source.pci_vendor:
            gpus += _sysfs_gpus(vendor, source, root)
    return gpus


def _os_name(root: Path) -> str:
    # /usr/lib/os-release is the fallback the os-release spec names (bootc links the two).
    for relative in ("etc/os-release", "usr/lib/os-release"):
        fields = dict(_pairs(_read(root / relative), "="))
        if fields.get("PRETTY_NAME"):
            return fields["PRETTY_NAME"].strip("\"'")
    return "unknown"


def probe(disk_path: Path, root: Path = Path("/")) -> SystemInfo:
    """Everything SystemInfo holds. `root` prefixes /proc, /sys and /etc (tests point it at a
    fake tree); disk_path is measured at its nearest existing parent when it does not exist."""
    warnings: list[str] = []

    cpuinfo = list(_pairs(_read(root / "proc/cpuinfo", warnings), ":"))
    meminfo = dict(_pairs(_read(root / "proc/meminfo", warnings), ":"))

    measured = disk_path
    while not measured.exists() and measured != measured.parent:
        measured = measured.parent
    try:
        stat = os.statvfs(measured)
        disk_total, disk_free = stat.f_blocks * stat.f_frsize, stat.f_bavail * stat.f_frsize
    except OSError as error:
        warnings.append(f"cannot measure {measured}: {error}")
        disk_total = disk_free = 0

    gpus = _probe_gpus(root, warnings)
    uname = os.uname()
    return SystemInfo(
        hostname=uname.nodename,
        os=_os_name(root),
        kernel=uname.release,
        cpu_model=next((value for key, value in cpuinfo if key == "model name"), "unknown"),
        cpu_count=sum(key == "processor" for key, _ in cpuinfo) or os.cpu_count() or 0,
        memory_total_mib=_int(meminfo.get("MemTotal")) // 1024,  # meminfo counts in kB
        memory_available_mib=_int(meminfo.get("MemAvailable")) // 1024,
        disk_path=str(disk_path),
        disk_total_bytes=disk_total,
        disk_free_bytes=disk_free,
        gpus=tuple(gpus),
        profile=profile_for(gpus),
        warnings=tuple(warnings),
    )
