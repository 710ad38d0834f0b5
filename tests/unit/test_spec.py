"""Spec errors: every one names the file, the line and the key path as written, and is a
BootlabError (rendered once by the CLI, without a traceback)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bootlab.errors import BootlabError

from image.spec import DEFAULT_SPEC, ImageSpec, SpecFile, load

pytestmark = pytest.mark.unit

BASE = """\
common:
  name: bootlab
  version: "1.0"
  registry:
    repository: quay.io/bootlab/test
profiles:
  dev:
    base:
      image: quay.io/fedora/fedora-bootc:42
      family: dnf
      bootc: true
    accelerator:
      type: nvidia
      driver: "570.1"
      cuda: "12.8"
"""


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based number of the line holding the `occurrence`-th match of `needle`."""
    hits = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) >= occurrence, f"{needle!r} not in the test spec"
    return hits[occurrence - 1]


def spec_error(path: Path, profile: str | None = None) -> BootlabError:
    with pytest.raises(BootlabError) as caught:
        SpecFile.read(path).resolve(profile)
    error = caught.value
    assert error.hint, "every spec error says how to fix it"
    assert "Traceback" not in error.render()
    return error


def first_line(error: BootlabError) -> str:
    return error.message.splitlines()[0]


@pytest.fixture
def spec_at(tmp_path: Path):
    def write(text: str) -> tuple[Path, str]:
        path = tmp_path / "image.yaml"
        path.write_text(text, encoding="utf-8")
        return path, text

    return write


def test_base_spec_is_valid(spec_at) -> None:
    path, _ = spec_at(BASE)
    spec = SpecFile.read(path).resolve()
    assert isinstance(spec, ImageSpec)
    assert spec.profile == "dev" and spec.accelerator.type == "nvidia"
    assert spec.source_dir == str(path.parent.resolve())


# --- validation errors: file:line: key.path: what is wrong -----------------------------------


def test_unknown_key_with_suggestion(spec_at) -> None:
    path, text = spec_at(BASE + "      drivr: x\n")
    error = spec_error(path)
    line = line_of(text, "drivr:")
    assert first_line(error) == (
        f"{path}:{line}: profiles.dev.accelerator.drivr: unknown key (did you mean 'driver'?)"
    )


def test_unknown_section_with_suggestion(spec_at) -> None:
    path, text = spec_at(BASE + "    acelerator_opts: {}\n")
    error = spec_error(path)
    line = line_of(text, "acelerator_opts")
    assert first_line(error).startswith(f"{path}:{line}: profiles.dev.acelerator_opts: unknown key")
    assert "did you mean 'accelerator'?" in error.message


def test_unknown_key_without_close_match_has_no_suggestion(spec_at) -> None:
    path, text = spec_at(BASE + "      zzzzqqq: 1\n")
    error = spec_error(path)
    assert first_line(error) == (
        f"{path}:{line_of(text, 'zzzzqqq')}: profiles.dev.accelerator.zzzzqqq: unknown key"
    )


def test_unknown_key_in_the_real_spec(tmp_path: Path) -> None:
    """The example from the brief: a typo under the dev profile of image/image.yaml."""
    text = DEFAULT_SPEC.read_text(encoding="utf-8")
    dev = text.index("\n  dev:\n")
    anchor = text.index("      type: none\n", dev) + len("      type: none\n")
    text = text[:anchor] + "      drivr: 570\n" + text[anchor:]
    path = tmp_path / "image.yaml"
    path.write_text(text, encoding="utf-8")
    error = spec_error(path, "dev")
    assert first_line(error) == (
        f"{path}:{line_of(text, 'drivr:')}: profiles.dev.accelerator.drivr: unknown key "
        "(did you mean 'driver'?)"
    )
    SpecFile.read(path).resolve("rhel")  # the other profiles are untouched


def test_wrong_type(spec_at) -> None:
    path, text = spec_at(BASE.replace("bootc: true", "bootc: sometimes"))
    error = spec_error(path)
    assert first_line(error).startswith(
        f"{path}:{line_of(text, '  bootc:')}: profiles.dev.base.bootc: "
    )
    assert "valid boolean" in error.message


def test_wrong_container_type(spec_at) -> None:
    path, text = spec_at(BASE + "    kernel:\n      args: iommu=pt\n")
    error = spec_error(path)
    line = line_of(text, "args:")
    assert first_line(error).startswith(f"{path}:{line}: profiles.dev.kernel.args: ")


def test_missing_required_key(spec_at) -> None:
    path, text = spec_at(BASE.replace("      family: dnf\n", ""))
    error = spec_error(path)
    # Reported where the mapping that lacks it starts.
    assert first_line(error) == (
        f"{path}:{line_of(text, 'base:')}: profiles.dev.base.family: required key is missing"
    )


def test_missing_required_section(spec_at) -> None:
    text = BASE.replace("  registry:\n    repository: quay.io/bootlab/test\n", "")
    path, _ = spec_at(text)
    error = spec_error(path)
    assert first_line(error) == (
        f"{path}:{line_of(text, 'dev:')}: profiles.dev.registry: required key is missing"
    )


def test_bad_literal(spec_at) -> None:
    path, text = spec_at(BASE.replace("family: dnf", "family: yum"))
    error = spec_error(path)
    assert first_line(error) == (
        f"{path}:{line_of(text, 'family:')}: profiles.dev.base.family: "
        "Input should be 'dnf' or 'apt'"
    )


def test_bad_union_tag(spec_at) -> None:
    path, text = spec_at(BASE.replace("type: nvidia", "type: nvdia"))
    error = spec_error(path)
    assert first_line(error).startswith(
        f"{path}:{line_of(text, 'accelerator:')}: profiles.dev.accelerator: "
    )
    assert "'nvdia'" in error.message
    for tag in ("nvidia", "amd", "intel", "none"):
        assert f"'{tag}'" in error.message


def test_union_member_key_path_has_no_tag(spec_at) -> None:
    """Pydantic puts the union tag in its error location; the message shows the key path
    as written, without it."""
    path, text = spec_at(BASE.replace('cuda: "12.8"', 'cuda: "twelve"'))
    error = spec_error(path)
    assert first_line(error).startswith(
        f"{path}:{line_of(text, 'cuda:')}: profiles.dev.accelerator.cuda: "
    )
    assert ".nvidia." not in error.message


def test_several_problems_are_all_listed(spec_at) -> None:
    text = BASE.replace("family: dnf", "family: yum").replace("bootc: true", "bootc: maybe")
    path, _ = spec_at(text)
    error = spec_error(path)
    assert "(and 1 more)" in first_line(error)
    assert len(error.message.splitlines()) == 2
    assert f"{path}:{line_of(text, 'family:')}: profiles.dev.base.family" in error.message
    assert f"{path}:{line_of(text, '  bootc:')}: profiles.dev.base.bootc" in error.message


# --- value errors from our validators ------------------------------------------------------


def test_kernel_arg_with_space(spec_at) -> None:
    kernel = "    kernel:\n      args:\n        - iommu=pt\n        - quiet splash\n"
    path, text = spec_at(BASE + kernel)
    error = spec_error(path)
    assert first_line(error) == (
        f"{path}:{line_of(text, '- quiet splash')}: profiles.dev.kernel.args.1: "
        "must be one kernel argument without spaces or quotes, e.g. iommu=pt"
    )


def test_file_dest_under_var(spec_at) -> None:
    path, text = spec_at(BASE + "    files:\n      - src: motd\n        dest: /var/lib/motd\n")
    error = spec_error(path)
    assert first_line(error) == (
        f"{path}:{line_of(text, '- src: motd')}: profiles.dev.files.0: "
        "dest must be under /usr or /etc (bootc does not update /var)"
    )


@pytest.mark.parametrize("dest", ["/usr/../var/x", "relative/path"])
def test_file_dest_must_be_absolute(spec_at, dest: str) -> None:
    path, text = spec_at(BASE + f"    files:\n      - src: motd\n        dest: {dest}\n")
    assert first_line(spec_error(path)) == (
        f"{path}:{line_of(text, 'dest:')}: profiles.dev.files.0.dest: "
        "must be an absolute path without '..', e.g. /usr/lib/bootlab"
    )


@pytest.mark.parametrize("dest", ["/var", "/etc", "/opt/x", "//usr/x"])
def test_file_dest_must_be_under_usr_or_etc(spec_at, dest: str) -> None:
    path, text = spec_at(BASE + f"    files:\n      - src: motd\n        dest: {dest}\n")
    assert first_line(spec_error(path)) == (
        f"{path}:{line_of(text, '- src: motd')}: profiles.dev.files.0: "
        "dest must be under /usr or /etc (bootc does not update /var)"
    )


def test_plain_text_password(spec_at) -> None:
    users = "    disk:\n      users:\n        - name: admin\n          password_hash: hunter2\n"
    path, text = spec_at(BASE + users)
    error = spec_error(path)
    assert first_line(error).startswith(
        f"{path}:{line_of(text, 'password_hash:')}: profiles.dev.disk.users.0.password_hash: "
        "must be a crypt hash"
    )
    assert "hunter2" not in error.message  # never echo what may be a real password


def test_crypt_hash_is_accepted(spec_at) -> None:
    users = "    disk:\n      users:\n        - name: admin\n          password_hash: $6$salt$abc\n"
    path, _ = spec_at(BASE + users)
    assert SpecFile.read(path).resolve().disk.users[0].password_hash == "$6$salt$abc"


def test_model_with_image_and_path(spec_at) -> None:
    models = "    models:\n      - name: m\n        image: quay.io/a/b:1\n        path: m\n"
    path, text = spec_at(BASE + models)
    error = spec_error(path)
    assert first_line(error) == (
        f"{path}:{line_of(text, '- name: m')}: profiles.dev.models.0: "
        "give exactly one of 'image' or 'path'"
    )


def test_model_with_neither_image_nor_path(spec_at) -> None:
    path, _ = spec_at(BASE + "    models:\n      - name: m\n")
    assert "give exactly one of 'image' or 'path'" in first_line(spec_error(path))


def test_bootstrap_needs_apt(spec_at) -> None:
    bootstrap = "      bootc: true\n      bootstrap: {suite: bookworm}\n"
    text = BASE.replace("      bootc: true\n", bootstrap)
    path, _ = spec_at(text)
    error = spec_error(path)
    # A rule across sections: reported at the profile, naming both keys.
    assert first_line(error) == (
        f"{path}:{line_of(text, 'dev:')}: profiles.dev: "
        "base.bootstrap (debootstrap) needs base.family: apt"
    )


def test_non_bootc_base_needs_container_init(spec_at) -> None:
    path, _ = spec_at(BASE.replace("bootc: true", "bootc: false"))
    assert "set container_init" in first_line(spec_error(path))


def test_duplicate_model_names(spec_at) -> None:
    models = "    models:\n      - {name: m, path: a}\n      - {name: m, path: b}\n"
    path, _ = spec_at(BASE + models)
    assert "each name may appear once" in first_line(spec_error(path))


def test_ml_remove_of_a_pinned_package(spec_at) -> None:
    ml = "    ml:\n      packages: {torch: '2.13.0'}\n      remove: [torchvision, torch]\n"
    path, text = spec_at(BASE + ml)
    assert first_line(spec_error(path)) == (
        f"{path}:{line_of(text, '    ml:')}: profiles.dev.ml: "
        "remove names torch, which packages pins: drop one of them"
    )


def test_ml_remove_in_the_install_step() -> None:
    """What ml.remove names leaves in the RUN step that installs it: no layer carries it."""
    from image.render import render

    spec = load(DEFAULT_SPEC, "dev")
    assert "torchvision" in spec.ml.remove
    steps = render(spec).containerfile.split("\nRUN ")
    [install] = [step for step in steps if f"-m venv {spec.ml.venv} " in step]
    uninstall = f"{spec.ml.venv}/bin/pip uninstall --yes " + " ".join(spec.ml.remove)
    assert install.index("pip install") < install.index(uninstall)


# --- keys inherited from `common` ------------------------------------------------------------


def test_error_in_common_is_reported_under_common(spec_at) -> None:
    text = BASE.replace(
        "    repository: quay.io/bootlab/test\n",
        "    repository: quay.io/bootlab/test\n    tagg: x\n",
    )
    path, _ = spec_at(text)
    error = spec_error(path)
    assert first_line(error) == (
        f"{path}:{line_of(text, 'tagg:')}: common.registry.tagg: unknown key (did you mean 'tag'?)"
    )


def test_common_value_error_when_profile_overrides_the_section(tmp_path: Path) -> None:
    """rhel has its own `disk:` mapping; the bad user still comes from common.disk.users."""
    text = DEFAULT_SPEC.read_text(encoding="utf-8").replace(
        "        groups: [wheel]\n", "        groups: [wheel]\n        password_hash: hunter2\n", 1
    )
    path = tmp_path / "image.yaml"
    path.write_text(text, encoding="utf-8")
    for profile in ("rhel", "dev"):
        error = spec_error(path, profile)
        assert first_line(error).startswith(
            f"{path}:{line_of(text, 'password_hash: hunter2')}: "
            "common.disk.users.0.password_hash: must be a crypt hash"
        )


def test_profile_value_wins_over_common_and_is_reported_there(spec_at) -> None:
    text = BASE.replace("    base:\n", '    version: "not a version"\n    base:\n')
    path, _ = spec_at(text)
    error = spec_error(path)
    assert first_line(error).startswith(
        f"{path}:{line_of(text, 'not a version')}: profiles.dev.version: "
    )


# --- file-level errors -----------------------------------------------------------------------


def test_invalid_yaml_syntax_names_the_line(spec_at) -> None:
    text = BASE.replace("      bootc: true\n", "      bootc: true: false\n")
    path, _ = spec_at(text)
    error = spec_error(path)
    assert first_line(error) == (
        f"{path}:{line_of(text, 'bootc: true: false')}: not valid YAML: "
        "mapping values are not allowed here"
    )


def test_invalid_yaml_tab_indentation(spec_at) -> None:
    text = BASE.replace("      family: dnf\n", "\tfamily: dnf\n")
    path, _ = spec_at(text)
    error = spec_error(path)
    assert first_line(error).startswith(f"{path}:{line_of(text, 'family:')}: not valid YAML: ")


def test_duplicate_key(spec_at) -> None:
    text = BASE.replace("      bootc: true\n", "      bootc: true\n      bootc: false\n")
    path, _ = spec_at(text)
    error = spec_error(path)
    assert error.message == f"{path}:{line_of(text, '  bootc:', 2)}: key 'bootc' appears twice"


def test_duplicate_profile(spec_at) -> None:
    text = BASE + "  dev:\n    name: other\n"
    path, _ = spec_at(text)
    line = line_of(text, "  dev:", 2)
    assert spec_error(path).message == f"{path}:{line}: key 'dev' appears twice"


def test_unknown_profile(spec_at) -> None:
    path, _ = spec_at(BASE)
    error = spec_error(path, "nope")
    assert error.message == f"profile 'nope' does not exist in {path}"
    assert error.hint == "choose one of: dev"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(BootlabError) as caught:
        SpecFile.read(path)
    assert caught.value.message == f"cannot read spec file {path}: No such file or directory"
    assert "--spec" in (caught.value.hint or "")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(BootlabError) as caught:
        SpecFile.read(tmp_path)
    assert caught.value.message.startswith(f"cannot read spec file {tmp_path}: ")


@pytest.mark.parametrize("content", ["", "\n\n", "# only a comment\n"])
def test_empty_file(spec_at, content: str) -> None:
    path, _ = spec_at(content)
    with pytest.raises(BootlabError) as caught:
        SpecFile.read(path)
    assert caught.value.message == f"{path}: the file is empty"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "{path}:1: the spec must be a mapping with 'profiles'"),
        ("just text\n", "{path}:1: the spec must be a mapping with 'profiles'"),
        ("---\n", "{path}:1: the spec must be a mapping with 'profiles'"),
        ("common: {}\n", "{path}: 'profiles' must map profile names to settings"),
        ("profiles: {}\n", "{path}: 'profiles' must map profile names to settings"),
        ("profiles: [a]\n", "{path}: 'profiles' must map profile names to settings"),
        ("profiles:\n  a: {}\nextra: 1\n", "{path}:3: unknown top-level key 'extra'"),
        ("profiles:\n  a: 1\n", "{path}:2: profile 'a' must be a mapping of settings"),
        ("common: 1\nprofiles:\n  a: {}\n", "{path}:1: 'common' must be a mapping"),
        ("default: b\nprofiles:\n  a: {}\n", "{path}:1: default profile 'b' is not defined"),
    ],
)
def test_file_structure_errors(spec_at, text: str, message: str) -> None:
    path, _ = spec_at(text)
    with pytest.raises(BootlabError) as caught:
        SpecFile.read(path)
    assert caught.value.message == message.format(path=path)


def test_default_profile_is_the_first_when_not_named(spec_at) -> None:
    path, _ = spec_at(BASE + "  other:\n    name: other\n")
    assert SpecFile.read(path).default_profile == "dev"


def test_real_spec_loads_every_profile() -> None:
    spec_file = SpecFile.read(DEFAULT_SPEC)
    assert spec_file.default_profile == "rhel"
    for name in spec_file.profiles:
        spec = spec_file.resolve(name)
        assert spec.profile == name
        assert spec.source_dir == str(DEFAULT_SPEC.parent.resolve())
    assert load().profile == "rhel"


def test_spec_is_frozen() -> None:
    spec = load()
    with pytest.raises(Exception, match=re.compile("frozen", re.IGNORECASE)):
        spec.name = "other"  # type: ignore[misc]


# --- known robustness bugs: inputs that escape as something other than BootlabError ----------
# Inputs that once escaped the loader as other exceptions (found by the fuzzer).

ESCAPES = {
    "recursive-alias": "profiles:\n  dev: &x\n    a: *x\n",
    "complex-mapping-key": "profiles:\n  ? [a, b]\n  : c\n",
    "non-string-profile-name": "profiles:\n  1: x\n",
    "non-string-top-level-key": "5: x\nprofiles:\n  a: {}\n",
    "mixed-type-unknown-keys": "5: x\nzz: y\nprofiles:\n  a: {}\n",
    "unhashable-default": "default: [a]\nprofiles:\n  a: {}\n",
    "control-character": "profiles:\n  a: {name: x\x07}\n",
}


@pytest.mark.parametrize("text", list(ESCAPES.values()), ids=list(ESCAPES))
def test_malformed_input_is_a_bootlab_error(spec_at, text: str) -> None:
    path, _ = spec_at(text)
    try:
        spec_file = SpecFile.read(path)
        for name in spec_file.profiles:
            spec_file.resolve(str(name))
    except BootlabError as error:
        assert error.message.startswith(str(path))
    else:
        raise AssertionError("expected a BootlabError")


def test_invalid_utf8_is_a_bootlab_error(tmp_path: Path) -> None:
    path = tmp_path / "image.yaml"
    path.write_bytes(b"profiles:\n  a: {name: \xff}\n")
    with pytest.raises(BootlabError):
        SpecFile.read(path)
