"""Fuzzing the spec loader: whatever the file holds, the result is an ImageSpec or a
BootlabError whose message starts with the spec file's path, never another exception.

Two sources of documents: random YAML-able trees, and the real profiles of image/image.yaml
mutated (keys dropped, unknown keys inserted, values swapped for other types). Valid specs
go on through render and the bootc-image-builder config, which may refuse them only with a
BootlabError too.

Inputs that once escaped as other exceptions (non-string mapping keys, an unhashable
`default`, recursive aliases, raw control characters) are regression tests in test_spec.py.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from bootlab.errors import BootlabError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from image.render import render, render_bib_config
from image.spec import DEFAULT_SPEC, ImageSpec, SpecFile, json_schema

pytestmark = pytest.mark.unit

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,  # no .hypothesis/ in the checkout; failures print a reproduce blob
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _schema_keys(node: Any) -> set[str]:
    """Every key any spec section accepts, from the published JSON schema."""
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict):
            found |= set(node["properties"])
        for value in node.values():
            found |= _schema_keys(value)
    elif isinstance(node, list):
        for value in node:
            found |= _schema_keys(value)
    return found


_KNOWN_KEYS = sorted(_schema_keys(json_schema()))
REAL = yaml.safe_load(DEFAULT_SPEC.read_text(encoding="utf-8"))
TOP_KEYS = ["default", "common", "profiles"]

keys = st.one_of(
    st.sampled_from(_KNOWN_KEYS + TOP_KEYS + ["nvidia", "amd", "intel", "none", "dnf", "apt"]),
    st.text(min_size=1, max_size=12),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "nvidia",
            "none",
            "dnf",
            "apt",
            "xfs",
            "/usr/lib/x",
            "/var/x",
            "0644",
            "30 GiB",
            "$6$salt$hash",
            "quay.io/org/name:tag",
            "iommu=pt",
            "1.0",
            "570.172.08",
            "",
        ]
    ),
)
trees = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=25,
)
# Trees keyed by real spec keys get past the file structure checks into validation.
spec_like = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(_KNOWN_KEYS), children, max_size=6),
    ),
    max_leaves=30,
)
bodies = st.dictionaries(st.sampled_from(_KNOWN_KEYS), spec_like, max_size=10)
# `default` as a scalar: a list or mapping there is a known bug (see test_spec.py).


@st.composite
def structured(draw: st.DrawFn) -> dict:
    """default/common/profiles laid out right, with random content."""
    document: dict = {}
    profiles = draw(st.dictionaries(keys, st.one_of(bodies, bodies, trees), min_size=1, max_size=3))
    choice = draw(st.sampled_from(["absent", "profile", "other"]))
    if choice == "profile":
        document["default"] = draw(st.sampled_from(sorted(profiles)))
    elif choice == "other":
        document["default"] = draw(scalars)
    if draw(st.booleans()):
        document["common"] = draw(st.one_of(bodies, bodies, trees))
    document["profiles"] = profiles
    return document


free = st.fixed_dictionaries({}, optional={"default": scalars, "common": trees, "profiles": trees})
documents = st.one_of(trees, free, structured(), structured())


def _dump(document: Any) -> str:
    # allow_unicode=False: control characters are written as escapes, which YAML accepts.
    return yaml.safe_dump(document, allow_unicode=False, sort_keys=False)


def check(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    try:
        spec_file = SpecFile.read(path)
        for name in spec_file.profiles:
            spec = spec_file.resolve(name)
            assert isinstance(spec, ImageSpec)
            _render_all(spec)
    except BootlabError as error:
        assert error.message.startswith(str(path)), error.message


def _render_all(spec: ImageSpec) -> None:
    """A valid spec renders, or is refused with a BootlabError (e.g. no recipe for apt)."""
    try:
        rendered = render(spec)
    except BootlabError:
        return
    assert rendered.containerfile.startswith("# Generated from")
    for disk_type in ("qcow2", "ami", "raw", "iso"):
        text = render_bib_config(spec, disk_type)
        if all((ord(c) >= 0x20 and c != "\x7f") or c == "\t" for c in _user_text(spec)):
            tomllib.loads(text)  # control characters in keys: known bug, see test_bib.py


def _user_text(spec: ImageSpec) -> str:
    return "".join("".join(user.ssh_keys) for user in spec.disk.users)


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "image.yaml"


@FUZZ
@given(document=documents)
def test_random_documents(spec_path: Path, document: Any) -> None:
    check(spec_path, _dump(document))


# --- mutations of the real profiles ----------------------------------------------------------


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside node (mapping keys and list indexes)."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            found.append((*prefix, key))
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.append((*prefix, index))
            found += _paths(value, (*prefix, index))
    return found


def _containers(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if isinstance(node, dict | list) else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _containers(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _containers(value, (*prefix, index))
    return found


def _get(node: Any, path: tuple) -> Any:
    for part in path:
        node = node[part]
    return node


def _other_type(value: Any) -> st.SearchStrategy:
    options = {
        bool: st.booleans(),
        int: st.integers(),
        float: st.floats(),
        str: st.text(max_size=20),
        type(None): st.none(),
        list: st.lists(scalars, max_size=3),
        dict: st.dictionaries(keys, scalars, max_size=3),
    }
    return st.one_of([option for kind, option in options.items() if not isinstance(value, kind)])


@st.composite
def mutated_specs(draw: st.DrawFn) -> dict:
    document = copy.deepcopy(REAL)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["drop", "insert", "swap", "known"]))
        if kind == "drop":
            paths = _paths(document)
            if not paths:
                continue
            path = draw(st.sampled_from(paths))
            parent = _get(document, path[:-1])
            del parent[path[-1]]
        elif kind == "insert":
            parent = _get(document, draw(st.sampled_from(_containers(document))))
            value = draw(trees)
            if isinstance(parent, dict):
                parent[draw(keys)] = value
            else:
                parent.insert(draw(st.integers(0, len(parent))), value)
        elif kind == "swap":
            paths = _paths(document)
            if not paths:
                continue
            path = draw(st.sampled_from(paths))
            parent = _get(document, path[:-1])
            parent[path[-1]] = draw(_other_type(parent[path[-1]]))
        else:  # a known key with a value of any type, anywhere
            maps = [p for p in _containers(document) if isinstance(_get(document, p), dict)]
            if maps:
                parent = _get(document, draw(st.sampled_from(maps)))
                parent[draw(st.sampled_from(_KNOWN_KEYS))] = draw(trees)
    if isinstance(document.get("default"), list | dict):
        document["default"] = "rhel"  # known bug, see test_spec.py
    return document


@FUZZ
@given(document=mutated_specs())
def test_mutated_real_profiles(spec_path: Path, document: dict) -> None:
    check(spec_path, _dump(document))


def test_unmutated_real_spec_passes_the_same_check(spec_path: Path) -> None:
    check(spec_path, _dump(REAL))
    assert len(SpecFile.read(spec_path).profiles) == 4
