"""Structure of the rendered Containerfile: layer order, bootc markers, nothing under /var.

Checked for every profile of image/image.yaml and for synthetic specs that switch on the
layers the real profiles leave out (models, extra files, OS packages, other accelerators).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

import pytest
from bootlab.errors import BootlabError

from image.render import MODELS_DIR, enabled_units, render
from image.spec import DEFAULT_SPEC, ImageSpec, SpecFile

pytestmark = pytest.mark.unit

PROFILES = list(SpecFile.read(DEFAULT_SPEC).profiles)
# Options such as --system-site-packages may come before the venv path.
VENV_OPTIONS = r"(--\S+ )*"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str  # continuation lines joined, whitespace collapsed
    line: int

    def __str__(self) -> str:
        return f"line {self.line}: {self.keyword} {self.args}"


def parse(text: str) -> list[Instruction]:
    """Containerfile → instructions; comments dropped, `\\` continuations joined."""
    instructions: list[Instruction] = []
    buffer: str | None = None
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (buffer is None and not stripped):
            continue
        if buffer is None:
            buffer, start = "", number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        keyword, _, args = buffer.partition(" ")
        instructions.append(Instruction(keyword.upper(), " ".join(args.split()), start))
        buffer = None
    assert buffer is None, "Containerfile ends inside a line continuation"
    return instructions


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last_from = max(i for i, ins in enumerate(instructions) if ins.keyword == "FROM")
    return instructions[last_from:]


def _under_var(path: str) -> bool:
    path = path.strip("'\"")
    return path == "/var" or path.startswith("/var/")


def var_writes(instruction: Instruction) -> list[str]:
    """Paths under /var an instruction would write into the image (bootc never updates /var
    after the first boot, so anything shipped there goes stale)."""
    if instruction.keyword in ("COPY", "ADD"):
        dest = shlex.split(instruction.args)[-1]
        return [dest] if _under_var(dest) else []
    if instruction.keyword in ("WORKDIR", "VOLUME"):
        return [word for word in re.split(r"[\s\[\],\"]+", instruction.args) if _under_var(word)]
    if instruction.keyword != "RUN":
        return []
    words = instruction.args.split(" ")
    while words and words[0].startswith("--"):  # RUN --mount=... options: not image content
        words.pop(0)
    lexer = shlex.shlex(" ".join(words), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:
        tokens = words
    found: list[str] = []
    segment: list[str] = []
    for token in [*tokens, ";"]:
        if token in ("&&", "||", ";", "|", "&", "(", ")"):
            # Removing package caches from /var is the cleanup bootc asks for, not a write.
            if segment and segment[0] != "rm":
                found += [
                    candidate
                    for word in segment
                    for candidate in {word, word.partition("=")[2]}
                    if _under_var(candidate)
                ]
            segment = []
        elif token not in (">", ">>", "2>", "<"):
            segment.append(token)
    return found


def _spec(write_spec, text: str) -> ImageSpec:
    return SpecFile.read(write_spec(text)).resolve()


def _default(profile: str) -> ImageSpec:
    return SpecFile.read(DEFAULT_SPEC).resolve(profile)


# Synthetic specs that switch on what the real profiles leave out.
SYNTHETIC = {
    "intel-models-files": """
        profiles:
          kitchen:
            name: kitchen
            version: "1.0"
            base: {image: quay.io/fedora/fedora-bootc:42, family: dnf, bootc: true}
            accelerator: {type: intel, release: 9.4/lts/2350}
            packages: [htop, tmux]
            ml: {packages: {numpy: "2.1.0"}}
            appliance: {enable: [bootlab.service]}
            models:
              - {name: granite, image: quay.io/bootlab/granite-model:1}
              - {name: local, path: models/local}
            files:
              - {src: motd, dest: /etc/motd, mode: "0644"}
              - {src: tool, dest: /usr/libexec/bootlab/tool, mode: "755"}
            kernel: {args: [console=ttyS0]}
            registry: {repository: quay.io/bootlab/kitchen}
        """,
    "apt-container-only": """
        profiles:
          box:
            name: box
            version: "1.0"
            base: {image: localhost/debian:bookworm, family: apt, bootc: false}
            packages: [curl]
            models: [{name: tiny, path: models/tiny}]
            offline: true
            container_init: true
            updates: {informer: false}
            registry: {repository: localhost/box}
        """,
    "bootc-also-container": """
        profiles:
          both:
            name: both
            version: "1.0"
            base: {image: quay.io/centos-bootc/centos-bootc:stream9, family: dnf, bootc: true}
            accelerator: {type: amd, rocm: 6.3.1}
            container_init: true
            registry: {repository: quay.io/bootlab/both}
        """,
}


@pytest.fixture(params=[f"profile:{name}" for name in PROFILES] + list(SYNTHETIC))
def case(request, write_spec) -> tuple[ImageSpec, list[Instruction]]:
    name: str = request.param
    if name.startswith("profile:"):
        spec = _default(name.removeprefix("profile:"))
    else:
        spec = _spec(write_spec, SYNTHETIC[name])
    return spec, parse(render(spec).containerfile)


def _index(stage: list[Instruction], pattern: str, keyword: str | None = None) -> int | None:
    hits = [
        i
        for i, ins in enumerate(stage)
        if re.search(pattern, ins.args) and (keyword is None or ins.keyword == keyword)
    ]
    several = [str(stage[i]) for i in hits]
    assert len(hits) <= 1, f"{pattern!r} matches several instructions: {several}"
    return hits[0] if hits else None


ACCELERATOR_MARK = {
    "nvidia": r"^--from=nvidia-kmod ",
    "amd": r"rocm-hip-runtime",
    "intel": r"intel-level-zero-gpu",
    "none": None,
}


def test_layer_order(case) -> None:
    spec, instructions = case
    stage = final_stage(instructions)
    assert stage[0].keyword == "FROM" and stage[0].args == spec.base.image

    layers: list[tuple[str, int | None]] = [("FROM base", 0)]
    if spec.packages or spec.base.family == "dnf":
        layers.append(("OS packages", _index(stage, r"^(dnf|apt-get) ", "RUN")))
    mark = ACCELERATOR_MARK[spec.accelerator.type]
    if mark:
        layers.append(("accelerator", _index(stage, mark)))
    layers.append(("ML venv", _index(stage, rf"-m venv {re.escape(spec.ml.venv)}( |$)", "RUN")))
    for model in spec.models:
        target = f"{MODELS_DIR}/{model.name}/"
        layers.append((f"model {model.name}", _index(stage, rf" {re.escape(target)}$", "COPY")))
    for extra in spec.files:
        layers.append((f"file {extra.dest}", _index(stage, rf" {re.escape(extra.dest)}$", "COPY")))
    if render(spec).overlay:
        layers.append(("overlay", _index(stage, r"^overlay/ /$", "COPY")))
    appliance_venv = re.escape(spec.appliance.venv)
    layers += [
        ("appliance deps", _index(stage, rf"-m venv {VENV_OPTIONS}{appliance_venv} ", "RUN")),
        ("appliance wheel COPY", _index(stage, r"^dist/ /usr/lib/bootlab/dist/$", "COPY")),
        ("appliance wheel install", _index(stage, r"--no-deps --no-index .*\.whl", "RUN")),
        ("units COPY", _index(stage, r"^units/ /usr/lib/systemd/system/$", "COPY")),
    ]
    units = enabled_units(spec)
    enable = _index(stage, r"systemctl enable ", "RUN")
    if units:
        layers.append(("units enable", enable))
        assert enable is not None
        assert stage[enable].args.endswith("systemctl enable " + " ".join(units))
    else:
        assert enable is None
    layers.append(("LABEL", next(i for i, ins in enumerate(stage) if ins.keyword == "LABEL")))

    missing = [name for name, index in layers if index is None]
    assert not missing, f"layers not found: {missing}"
    order = [name for name, _ in sorted(layers, key=lambda item: item[1])]
    assert order == [name for name, _ in layers], f"layers out of order: {order}"
    # One COPY per model, in spec order.
    model_copies = [ins.args.split()[-1] for ins in stage if MODELS_DIR in ins.args]
    assert model_copies == [f"{MODELS_DIR}/{model.name}/" for model in spec.models]


def test_stages(case) -> None:
    spec, instructions = case
    froms = [ins for ins in instructions if ins.keyword == "FROM"]
    if spec.accelerator.type == "nvidia":
        assert [f.args for f in froms] == [f"{spec.base.image} AS nvidia-kmod", spec.base.image]
    else:
        assert [f.args for f in froms] == [spec.base.image]


def test_bootc_lint_is_last_exactly_when_bootc(case) -> None:
    spec, instructions = case
    lints = [ins for ins in instructions if ins.args == "bootc container lint"]
    if spec.base.bootc:
        assert len(lints) == 1
        assert instructions[-1] == lints[0] and instructions[-1].keyword == "RUN"
    else:
        assert lints == []


def test_bootc_label_exactly_when_bootc(case) -> None:
    spec, instructions = case
    labels = [ins for ins in instructions if ins.keyword == "LABEL"]
    assert len(labels) == 1
    label = labels[0].args
    assert ("containers.bootc=1" in label) is spec.base.bootc
    assert f'io.bootlab.profile="{spec.profile}"' in label
    assert f'io.bootlab.accelerator="{spec.accelerator.type}"' in label
    assert f'org.opencontainers.image.title="{spec.name}"' in label
    assert f'org.opencontainers.image.version="{spec.version}"' in label
    # No build-argument values: a label from ARG would be served stale from the layer cache.
    assert "${" not in label


def test_init_only_with_container_init(case) -> None:
    spec, instructions = case
    stopsignal = [ins.args for ins in instructions if ins.keyword == "STOPSIGNAL"]
    cmd = [ins.args for ins in instructions if ins.keyword in ("CMD", "ENTRYPOINT")]
    if spec.container_init:
        assert stopsignal == ["SIGRTMIN+3"]
        assert cmd == ['["/sbin/init"]']
    else:
        assert stopsignal == [] and cmd == []


def test_nothing_written_under_var(case) -> None:
    _, instructions = case
    writes = {str(ins): var_writes(ins) for ins in instructions if var_writes(ins)}
    assert not writes, f"instructions writing under /var: {writes}"


def test_offline_installs_only_from_the_wheelhouse(case) -> None:
    spec, instructions = case
    pips = [ins for ins in instructions if "/bin/pip install" in ins.args]
    assert pips
    for ins in pips:
        if ".whl" in ins.args:  # the appliance wheel, from the build context, never an index
            assert "--no-index" in ins.args
            continue
        offline = "--no-index --find-links /run/bootlab-wheels" in ins.args
        mounted = ins.args.startswith("--mount=type=bind,source=wheels,target=/run/bootlab-wheels ")
        assert offline is spec.offline and mounted is spec.offline, str(ins)


def test_kargs_only_for_bootc(case) -> None:
    spec, _ = case
    overlay = render(spec).overlay
    has_kargs = "usr/lib/bootc/kargs.d/10-bootlab.toml" in overlay
    wants_kargs = bool(spec.kernel.args) or spec.accelerator.type == "nvidia"
    assert has_kargs is (spec.base.bootc and wants_kargs)


# --- the checks themselves can fail --------------------------------------------------------


def test_parser_joins_continuations_and_drops_comments() -> None:
    text = "# c\nFROM a AS b\n\nRUN x \\\n  # inside\n && y\nLABEL k=v\n"
    assert parse(text) == [
        Instruction("FROM", "a AS b", 2),
        Instruction("RUN", "x && y", 4),
        Instruction("LABEL", "k=v", 7),
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("COPY foo /var/lib/foo", ["/var/lib/foo"]),
        ("RUN mkdir -p /var/lib/bootlab", ["/var/lib/bootlab"]),
        ("RUN echo hi > /var/log/x && true", ["/var/log/x"]),
        ("RUN pip install --target=/var/lib/py x", ["/var/lib/py"]),
        ("RUN dnf install -y x && dnf clean all && rm -rf /var/cache/dnf", []),
        ("RUN --mount=type=cache,target=/var/cache/dnf dnf install -y x", []),
        ("COPY overlay/ /", []),
        ("RUN python3 -m venv /usr/lib/varnish", []),
    ],
)
def test_var_write_detector(line: str, expected: list[str]) -> None:
    assert var_writes(parse(line)[0]) == expected


NVIDIA_SPEC = """
    profiles:
      p:
        name: p
        version: "1"
        base: {image: quay.io/centos-bootc/centos-bootc:stream9, family: dnf, bootc: true}
        accelerator: {type: nvidia, driver: "570.172.08", cuda: "12.8", %s}
        registry: {repository: quay.io/x/y}
    """


def test_nvidia_options_shape_the_install(write_spec) -> None:
    lean = _spec(
        write_spec,
        NVIDIA_SPEC % "fabricmanager: false, persistenced: false, container_toolkit: false",
    )
    rendered = render(lean)
    assert "nvidia-fabric-manager" not in rendered.containerfile
    assert "nvidia-persistenced" not in rendered.containerfile
    assert "nvidia-container-toolkit" not in rendered.containerfile
    assert not any("fabricmanager" in path for path in rendered.overlay)
    full = render(_spec(write_spec, NVIDIA_SPEC % "fabricmanager: true"))
    assert "nvidia-fabric-manager-570.172.08" in full.containerfile
    assert "nvidia-fabricmanager.service" in full.containerfile


@pytest.mark.parametrize("section", ["ml", "appliance"])
def test_spec_rejects_venv_under_var(write_spec, section: str) -> None:
    path = write_spec(
        f"""
        profiles:
          p:
            name: p
            version: "1"
            base: {{image: quay.io/fedora/fedora-bootc:42, family: dnf, bootc: true}}
            {section}: {{venv: /var/lib/bootlab/venv}}
            registry: {{repository: quay.io/x/y}}
        """
    )
    with pytest.raises(BootlabError):
        SpecFile.read(path).resolve()


def test_cpu_wheelhouse_refuses_cuda_wheels(tmp_path) -> None:
    """A resolver that picked PyPI's (CUDA) torch for a CPU profile stops the build."""
    from image.pipeline import refuse_gpu_wheels

    specs = SpecFile.read(DEFAULT_SPEC)
    (tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").touch()
    refuse_gpu_wheels(specs.resolve("dev"), tmp_path)  # the CPU build alone is fine
    (tmp_path / "nvidia_cublas-13.1.0-py3-none-manylinux_2_27_x86_64.whl").touch()
    with pytest.raises(BootlabError, match="pulled CUDA wheels"):
        refuse_gpu_wheels(specs.resolve("dev"), tmp_path)
    refuse_gpu_wheels(specs.resolve("rhel"), tmp_path)  # an NVIDIA profile wants them
    assert specs.resolve("dev").ml.packages["torch"].endswith("+cpu")  # no CUDA fallback
