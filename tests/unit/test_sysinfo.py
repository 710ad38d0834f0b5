"""System info (appliance/bootlab/sysinfo.py): the GPU tool parsers against real recorded
outputs (tests/data/sysinfo, see SOURCES.md there), hardware profiles, and probe() against a
fake /proc, /sys and /etc with fake GPU tools on PATH."""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest
from bootlab import sysinfo
from bootlab.sysinfo import (
    Gpu,
    parse_nvidia_smi_xml,
    parse_rocm_smi_json,
    parse_xpu_smi_json,
    probe,
    profile_for,
    short_model,
)

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parent.parent / "data" / "sysinfo"
# Resolved before any test empties PATH: the fake tools call them by absolute path.
CAT = shutil.which("cat") or "/bin/cat"
SLEEP = shutil.which("sleep") or "/bin/sleep"

Parser = Callable[[str], list[Gpu]]


class Expected(NamedTuple):
    parse: Parser
    gpu_count: int
    name: str
    model: str
    memory_mib: int
    driver: str | None
    first_uuid: str | None
    profile: str


# Read off each file by eye, not computed by the code under test: <product_name>,
# <fb_memory_usage><total> of the <gpu> itself, <driver_version>, the first <uuid>; for
# rocm-smi "Card series", "VRAM Total Memory (B)" / 2**20, "Unique ID", system "Driver
# version"; for xpu-smi "device_name" and "uuid" (its list has no memory size, hence 0).
RECORDED: dict[str, Expected] = {
    "nvidia-smi-q-x.8xV100S.xml": Expected(
        parse_nvidia_smi_xml,
        gpu_count=8,
        name="Tesla V100S-PCIE-32GB",
        model="V100S",
        memory_mib=32510,
        driver="460.73.01",
        first_uuid="GPU-76098dc1-d3bc-9a1b-7ea6-f7b48837829e",
        profile="Nvidia 8x V100S",
    ),
    # GPU 0 is 81:00.0, whose minor_number is 1: the index is nvidia-smi's order, not minor.
    "nvidia-smi-q-x.2xRTXA5000.xml": Expected(
        parse_nvidia_smi_xml,
        gpu_count=2,
        name="NVIDIA RTX A5000",
        model="RTX A5000",
        memory_mib=24564,
        driver="590.44.01",
        first_uuid="GPU-12345678-aaaa-bbbb-cccc-0123456789ab",
        profile="Nvidia 2x RTX A5000",
    ),
    "nvidia-smi-q-x.1xA10G.xml": Expected(
        parse_nvidia_smi_xml,
        gpu_count=1,
        name="NVIDIA A10G",
        model="A10G",
        memory_mib=23028,
        driver="515.105.01",
        first_uuid="GPU-9a9a6c50-2a47-2f51-a902-b82c3b127e94",
        profile="Nvidia 1x A10G",
    ),
    # Recorded by bootlab itself on a lent H200 (nvidia-smi of driver 580, DTD v13).
    "nvidia-smi-q-x.1xH200.xml": Expected(
        parse_nvidia_smi_xml,
        gpu_count=1,
        name="NVIDIA H200",
        model="H200",
        memory_mib=143771,
        driver="580.159.04",
        first_uuid="GPU-1de9163e-f184-1fe2-fbb2-627d7c2e8790",
        profile="Nvidia 1x H200",
    ),
    # MIG enabled: the two mig_device slices say 19968 MiB each; the GPU has 40960 MiB.
    "nvidia-smi-q-x.1xA100-SXM4-40GB-MIG.xml": Expected(
        parse_nvidia_smi_xml,
        gpu_count=1,
        name="NVIDIA A100-SXM4-40GB",
        model="A100",
        memory_mib=40960,
        driver="510.47.03",
        first_uuid="GPU-27b94a00-ed54-5c24-b1fd-1054085de32a",
        profile="Nvidia 1x A100",
    ),
    # 34342961152 B = 32752 MiB; "Unique ID" is "N/A" in this ROCm 5.7.1 recording.
    "rocm-smi.6xMI100.rocm571.json": Expected(
        parse_rocm_smi_json,
        gpu_count=6,
        name="Arcturus GL-XL [Instinct MI100]",
        model="MI100",
        memory_mib=32752,
        driver="6.2.4",
        first_uuid=None,
        profile="AMD 6x MI100",
    ),
    "rocm-smi.4xMI100.rocm602.json": Expected(
        parse_rocm_smi_json,
        gpu_count=4,
        name="Arcturus GL-XL [Instinct MI100]",
        model="MI100",
        memory_mib=32752,
        driver="6.3.6",
        first_uuid="0x79ccd55167a2124a",
        profile="AMD 4x MI100",
    ),
    "xpu-smi-discovery.2xMax1100.json": Expected(
        parse_xpu_smi_json,
        gpu_count=2,
        name="Intel(R) Data Center GPU Max 1100",
        model="Max 1100",
        memory_mib=0,
        driver=None,
        first_uuid="00000000-0000-0029-0000-002f0bda8086",
        profile="Intel 2x Max 1100",
    ),
    # Not a known data-center model: the profile shows the unbranded name.
    "xpu-smi-discovery.1xIntel-0x020a.json": Expected(
        parse_xpu_smi_json,
        gpu_count=1,
        name="Intel(R) Graphics [0x020a]",
        model="Graphics [0x020a]",
        memory_mib=0,
        driver=None,
        first_uuid="00000000-0000-0000-0000-020a00008086",
        profile="Intel 1x Graphics [0x020a]",
    ),
}

# `nvidia-smi --query-gpu=... --format=csv` recordings: probe does not run this form, but
# they are the only real H100/H200 names on file, so they check short_model() and profiles.
# (file: name, memory.total, profile), read off the files.
QUERY_CSV = {
    "nvidia-smi-query.1xH100-80GB-HBM3.csv": ("NVIDIA H100 80GB HBM3", 81559, "Nvidia 1x H100"),
    "nvidia-smi-query.1xH200.csv": ("NVIDIA H200", 143771, "Nvidia 1x H200"),
}

# `xpu-smi discovery -d 0 -j` for the Max 1100 above, from the same source
# (2maz/slurm-monitor tests/slurm_monitor/devices/test_gpu.py, XPU_DISCOVERY[1]); inline
# because that sample has a Python trailing comma, dropped here. 51522830336 B = 49136 MiB.
XPU_DETAIL = """{
    "device_id": 0,
    "device_name": "Intel(R) Data Center GPU Max 1100",
    "device_stepping": "B4",
    "device_type": "GPU",
    "driver_version": "I915_23.10.72_PSB_231129.76",
    "drm_device": "/dev/dri/card1",
    "kernel_version": "5.15.0-122-generic",
    "max_mem_alloc_size_byte": "48946688000",
    "memory_free_size_byte": "51493543936",
    "memory_physical_size_byte": "51522830336",
    "number_of_tiles": "1",
    "serial_number": "unknown",
    "uuid": "00000000-0000-0029-0000-002f0bda8086",
    "vendor_name": "Intel(R) Corporation"
}"""


def recorded(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def gpu(name: str, memory_mib: int, vendor: sysinfo.Vendor = "nvidia", index: int = 0) -> Gpu:
    return Gpu(
        vendor=vendor,
        index=index,
        name=name,
        model=short_model(vendor, name),
        memory_mib=memory_mib,
    )


# --- parsers against the recorded files -------------------------------------------------------


def test_every_recorded_file_is_checked() -> None:
    on_disk = {path.name for path in DATA.iterdir()} - {"SOURCES.md"}
    assert on_disk == set(RECORDED) | set(QUERY_CSV)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_recorded_output(name: str) -> None:
    want = RECORDED[name]
    gpus = want.parse(recorded(name))
    assert len(gpus) == want.gpu_count
    assert [g.index for g in gpus] == list(range(want.gpu_count))
    assert {(g.name, g.model, g.memory_mib, g.driver) for g in gpus} == {
        (want.name, want.model, want.memory_mib, want.driver)
    }
    assert gpus[0].uuid == want.first_uuid
    profile = profile_for(gpus)
    assert (profile.name, profile.gpu_count, profile.vram_mib_per_gpu) == (
        want.profile,
        want.gpu_count,
        want.memory_mib,
    )


def test_recorded_gpus_keep_their_own_uuid() -> None:
    gpus = parse_nvidia_smi_xml(recorded("nvidia-smi-q-x.8xV100S.xml"))
    assert [g.uuid for g in gpus] == [  # the eight <uuid> elements, in file order
        "GPU-76098dc1-d3bc-9a1b-7ea6-f7b48837829e",
        "GPU-bbf7a241-bf9a-eb90-b2fb-d213294faf48",
        "GPU-8f75e71c-23dd-a060-d997-4caf592954db",
        "GPU-3181eb56-505c-8214-ba05-c132f68f89b8",
        "GPU-2aa87d54-d4ff-2900-812b-1a4b7e119583",
        "GPU-39c3a168-9034-0b5a-223a-1042f30a9242",
        "GPU-d2446f91-171e-1b54-515d-9d9b03484ddf",
        "GPU-1d955959-c95b-4f40-2cac-100d3006ffe2",
    ]


@pytest.mark.parametrize("name", sorted(QUERY_CSV))
def test_query_csv_names(name: str) -> None:
    want_name, want_mib, want_profile = QUERY_CSV[name]
    [row] = csv.DictReader(io.StringIO(recorded(name)), skipinitialspace=True)
    assert (row["name"], row["memory.total [MiB]"]) == (want_name, f"{want_mib} MiB")
    profile = profile_for([gpu(row["name"], want_mib)])
    assert (profile.name, profile.vram_mib_per_gpu) == (want_profile, want_mib)


def test_xpu_smi_device_detail() -> None:
    [detail] = parse_xpu_smi_json(XPU_DETAIL)
    assert (detail.index, detail.model, detail.memory_mib, detail.driver) == (
        0,
        "Max 1100",
        49136,
        "I915_23.10.72_PSB_231129.76",
    )


def test_rocm_smi_warning_before_the_json() -> None:
    # rocm-smi prints lines like this one ahead of its output (seen in recorded CSV output).
    text = recorded("rocm-smi.4xMI100.rocm602.json")
    warned = "WARNING: Unlocked monitor_devices lock; it should have already been unlocked.\n"
    assert parse_rocm_smi_json(warned + text) == parse_rocm_smi_json(text)


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA H100 PCIe", "H100"),
        ("NVIDIA H100 NVL", "H100"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA A100 80GB PCIe", "A100"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", "L40S"),
        ("Tesla T4", "T4"),
        ("NVIDIA A10G", "A10G"),
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
    ],
)
def test_short_model_nvidia(name: str, model: str) -> None:
    assert short_model("nvidia", name) == model


def test_short_model_amd_and_intel() -> None:
    assert short_model("amd", "AMD Instinct MI300X") == "MI300X"
    assert short_model("intel", "Intel(R) Data Center GPU Max 1550") == "Max 1550"


# --- unreadable input -------------------------------------------------------------------------

PARSERS: dict[str, tuple[Parser, str]] = {
    "nvidia": (parse_nvidia_smi_xml, "nvidia-smi-q-x.8xV100S.xml"),
    "amd": (parse_rocm_smi_json, "rocm-smi.6xMI100.rocm571.json"),
    "intel": (parse_xpu_smi_json, "xpu-smi-discovery.2xMax1100.json"),
}
GARBAGE = [
    "",
    "   \n",
    "garbage",
    "<",
    "{",
    "[]",
    "null",
    "<html><body>502</body></html>",
    '{"device_list": "none", "card0": "none"}',
    "\x00\xff" * 10,
    "{" * 100_000,
]


@pytest.mark.parametrize("vendor", sorted(PARSERS))
@pytest.mark.parametrize("text", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_gives_no_gpus(vendor: str, text: str) -> None:
    parse, _ = PARSERS[vendor]
    assert parse(text) == []


@pytest.mark.parametrize("vendor", sorted(PARSERS))
def test_truncated_output_gives_no_gpus(vendor: str) -> None:
    parse, name = PARSERS[vendor]
    text = recorded(name)
    assert parse(text[: len(text) // 2]) == []


def test_nvidia_missing_fields() -> None:
    text = """<nvidia_smi_log>
        <gpu id="00000000:01:00.0">
            <product_name>NVIDIA L4</product_name>
            <uuid>N/A</uuid>
            <fb_memory_usage><total>N/A</total></fb_memory_usage>
        </gpu>
        <gpu id="00000000:02:00.0"></gpu>
    </nvidia_smi_log>"""
    first, second = parse_nvidia_smi_xml(text)
    assert (first.name, first.model, first.memory_mib, first.uuid, first.driver) == (
        "NVIDIA L4",
        "L4",
        0,
        None,
        None,
    )
    assert (second.index, second.name, second.memory_mib) == (1, "NVIDIA GPU", 0)


def test_amd_and_intel_missing_fields() -> None:
    [amd] = parse_rocm_smi_json('{"card3": {}}')
    assert (amd.index, amd.name, amd.memory_mib, amd.uuid) == (3, "AMD GPU", 0, None)
    [intel] = parse_xpu_smi_json('{"device_list": [{"device_id": 2}, "junk"]}')
    assert (intel.index, intel.name, intel.memory_mib) == (2, "Intel GPU", 0)


def test_xpu_smi_skips_virtual_functions() -> None:
    text = """{"device_list": [
        {"device_id": 0, "device_name": "Intel(R) Data Center GPU Flex 170",
         "device_type": "GPU", "device_function_type": "physical"},
        {"device_id": 1, "device_name": "Intel(R) Data Center GPU Flex 170",
         "device_type": "GPU", "device_function_type": "virtual"}]}"""
    assert [g.index for g in parse_xpu_smi_json(text)] == [0]


# --- profiles ---------------------------------------------------------------------------------


def test_profile_8x_h100() -> None:
    gpus = [gpu("NVIDIA H100 80GB HBM3", 81559, index=i) for i in range(8)]
    profile = profile_for(gpus)
    assert profile.model_dump() == {
        "name": "Nvidia 8x H100",
        "vendor": "nvidia",
        "gpu_model": "H100",
        "gpu_count": 8,
        "vram_mib_per_gpu": 81559,
    }


def test_profile_1x_l4() -> None:
    assert profile_for([gpu("NVIDIA L4", 23034)]).name == "Nvidia 1x L4"


def test_profile_8x_mi300x() -> None:
    gpus = [gpu("AMD Instinct MI300X", 196592, vendor="amd", index=i) for i in range(8)]
    assert profile_for(gpus).name == "AMD 8x MI300X"


def test_profile_cpu_only() -> None:
    assert profile_for([]).model_dump() == {
        "name": "CPU only",
        "vendor": "cpu",
        "gpu_model": None,
        "gpu_count": 0,
        "vram_mib_per_gpu": 0,
    }


def test_profile_mixed() -> None:
    gpus = [
        gpu("Tesla T4", 15360),
        gpu("NVIDIA A100-SXM4-80GB", 81920, index=1),
        gpu("NVIDIA A100-SXM4-40GB", 40960, index=2),
        gpu("AMD Instinct MI300X", 196592, vendor="amd"),
        gpu("AMD Instinct MI300X", 196592, vendor="amd", index=1),
        gpu("AMD Instinct MI300X", 196592, vendor="amd", index=2),
    ]
    profile = profile_for(gpus)
    # The first GPU's vendor, its biggest model group, and the VRAM all of that group have.
    assert (profile.name, profile.gpu_count, profile.vram_mib_per_gpu) == (
        "Nvidia 2x A100",
        2,
        40960,
    )
    # A tie goes to the model seen first.
    assert profile_for([gpu("NVIDIA L4", 23034), gpu("Tesla T4", 15360)]).name == "Nvidia 1x L4"


# --- probe() ----------------------------------------------------------------------------------

CPUINFO = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
cpu MHz\t\t: 2000.000

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
cpu MHz\t\t: 2000.000
"""
MEMINFO = """\
MemTotal:       263762108 kB
MemFree:        240000000 kB
MemAvailable:   250123456 kB
"""
OS_RELEASE = 'NAME="Red Hat Enterprise Linux"\nPRETTY_NAME="Red Hat Enterprise Linux 9.4 (Plow)"\n'


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def drm_card(root: Path, card: str, **files: str) -> None:
    """/sys/class/drm/<card>/device/<file> for each keyword (vendor, class, device, ...)."""
    for name, text in files.items():
        write(root / "sys/class/drm" / card / "device" / name, text + "\n")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    write(root / "proc/cpuinfo", CPUINFO)
    write(root / "proc/meminfo", MEMINFO)
    write(root / "etc/os-release", OS_RELEASE)
    # Intel integrated graphics (what every Intel desktop has at 00:02.0): not a GPU to count.
    drm_card(root, "card0", vendor="0x8086", **{"class": "0x030000"}, device="0x46a6")
    (root / "sys/class/drm/card0-DP-1").mkdir()
    return root


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH holds only this directory: no real GPU tool is found, only the fakes put here."""
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", str(path))
    return path


def fake_tool(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script, encoding="utf-8")
    path.chmod(0o755)


def test_probe_cpu_only(root: Path, bin_dir: Path, tmp_path: Path) -> None:
    disk = tmp_path / "models" / "not-yet"  # measured at tmp_path, its nearest parent
    info = probe(disk, root=root)
    stat = os.statvfs(tmp_path)
    assert info.model_dump(exclude={"disk_free_bytes"}) == {
        "hostname": os.uname().nodename,
        "os": "Red Hat Enterprise Linux 9.4 (Plow)",
        "kernel": os.uname().release,
        "cpu_model": "Intel(R) Xeon(R) Platinum 8480+",
        "cpu_count": 2,
        "memory_total_mib": 257580,  # 263762108 kB // 1024
        "memory_available_mib": 244261,  # 250123456 kB // 1024
        "disk_path": str(disk),
        "disk_total_bytes": stat.f_blocks * stat.f_frsize,
        "gpus": (),
        "profile": profile_for([]).model_dump(),
        "warnings": (),
    }
    assert 0 < info.disk_free_bytes <= info.disk_total_bytes


def test_probe_nvidia_smi(root: Path, bin_dir: Path, tmp_path: Path) -> None:
    xml = DATA / "nvidia-smi-q-x.8xV100S.xml"
    fake_tool(bin_dir, "nvidia-smi", f'[ "$*" = "-q -x" ] || exit 2\nexec {CAT} "{xml}"\n')
    info = probe(tmp_path, root=root)
    assert info.warnings == ()
    assert info.gpus == tuple(parse_nvidia_smi_xml(xml.read_text(encoding="utf-8")))
    assert (info.profile.name, info.profile.vram_mib_per_gpu) == ("Nvidia 8x V100S", 32510)


def test_probe_nvidia_smi_fails(root: Path, bin_dir: Path, tmp_path: Path) -> None:
    message = "Failed to initialize NVML: Driver/library version mismatch"
    fake_tool(bin_dir, "nvidia-smi", f'echo "{message}" >&2\nexit 9\n')
    info = probe(tmp_path, root=root)
    assert info.warnings == (f"nvidia-smi failed (exit 9): {message}",)
    assert (info.gpus, info.profile.name) == ((), "CPU only")


def test_probe_nvidia_smi_prints_garbage(root: Path, bin_dir: Path, tmp_path: Path) -> None:
    fake_tool(bin_dir, "nvidia-smi", 'echo "<nvidia_smi_log><gpu>"\n')
    info = probe(tmp_path, root=root)
    assert info.warnings == ("nvidia-smi printed no GPU that bootlab could read",)
    assert info.profile.name == "CPU only"


def test_probe_nvidia_smi_hangs(
    root: Path, bin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sysinfo, "_TIMEOUT_S", 0.2)
    fake_tool(bin_dir, "nvidia-smi", f"exec {SLEEP} 10\n")
    info = probe(tmp_path, root=root)
    [warning] = info.warnings
    assert "nvidia-smi" in warning and "did not finish" in warning
    assert info.profile.name == "CPU only"


def test_probe_rocm_smi(root: Path, bin_dir: Path, tmp_path: Path) -> None:
    recording = DATA / "rocm-smi.4xMI100.rocm602.json"
    fake_tool(bin_dir, "rocm-smi", f'case "$*" in *--json*) exec {CAT} "{recording}";; esac\n')
    info = probe(tmp_path, root=root)
    assert info.warnings == ()
    assert (info.profile.name, info.profile.vram_mib_per_gpu) == ("AMD 4x MI100", 32752)


def test_probe_xpu_smi_with_device_detail(root: Path, bin_dir: Path, tmp_path: Path) -> None:
    listing = DATA / "xpu-smi-discovery.2xMax1100.json"
    detail = tmp_path / "detail.json"
    detail.write_text(XPU_DETAIL, encoding="utf-8")
    fake_tool(
        bin_dir,
        "xpu-smi",
        f'[ "$*" = "discovery -j" ] && exec {CAT} "{listing}"\n'
        f'[ "$1 $2 $4" = "discovery -d -j" ] && exec {CAT} "{detail}"\n'
        "exit 2\n",
    )
    info = probe(tmp_path, root=root)
    assert info.warnings == ()
    assert [(g.index, g.memory_mib, g.driver) for g in info.gpus] == [
        (0, 49136, "I915_23.10.72_PSB_231129.76"),
        (1, 49136, "I915_23.10.72_PSB_231129.76"),
    ]
    assert (info.profile.name, info.profile.vram_mib_per_gpu) == ("Intel 2x Max 1100", 49136)


def test_probe_xpu_smi_detail_fails(root: Path, bin_dir: Path, tmp_path: Path) -> None:
    listing = DATA / "xpu-smi-discovery.2xMax1100.json"
    fake_tool(
        bin_dir,
        "xpu-smi",
        f'[ "$*" = "discovery -j" ] && exec {CAT} "{listing}"\necho "no such device" >&2\nexit 1\n',
    )
    info = probe(tmp_path, root=root)
    assert info.warnings == ("xpu-smi failed (exit 1): no such device",) * 2
    assert [g.memory_mib for g in info.gpus] == [0, 0]
    assert info.profile.name == "Intel 2x Max 1100"


def test_probe_amd_sysfs(root: Path, bin_dir: Path, tmp_path: Path) -> None:
    vram = str(196592 * 1024 * 1024)
    for card in ("card1", "card2"):
        drm_card(
            root,
            card,
            vendor="0x1002",
            **{"class": "0x038000"},
            device="0x74a1",
            mem_info_vram_total=vram,
        )
    info = probe(tmp_path, root=root)
    assert info.warnings == ()
    assert [(g.index, g.name, g.model, g.memory_mib) for g in info.gpus] == [
        (0, "AMD GPU [0x74a1]", "MI300X", 196592),
        (1, "AMD GPU [0x74a1]", "MI300X", 196592),
    ]
    assert info.profile.name == "AMD 2x MI300X"


def test_probe_intel_sysfs_skips_integrated_graphics(
    root: Path, bin_dir: Path, tmp_path: Path
) -> None:
    drm_card(root, "card1", vendor="0x8086", **{"class": "0x038000"}, device="0x0bd5")
    info = probe(tmp_path, root=root)
    assert [(g.name, g.model, g.memory_mib) for g in info.gpus] == [
        ("Intel GPU [0x0bd5]", "Max 1550", 0)
    ]
    assert info.profile.name == "Intel 1x Max 1550"


def test_probe_empty_root(bin_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    info = probe(tmp_path, root=empty)
    assert (info.os, info.cpu_model, info.memory_total_mib) == ("unknown", "unknown", 0)
    assert info.cpu_count == os.cpu_count()
    assert [w.split(":")[0] for w in info.warnings] == [
        f"cannot read {empty / 'proc/cpuinfo'}",
        f"cannot read {empty / 'proc/meminfo'}",
    ]


def test_probe_os_release_under_usr_lib(root: Path, bin_dir: Path, tmp_path: Path) -> None:
    (root / "etc/os-release").unlink()
    write(root / "usr/lib/os-release", 'PRETTY_NAME="Fedora Linux 40 (Forty)"\n')
    assert probe(tmp_path, root=root).os == "Fedora Linux 40 (Forty)"
