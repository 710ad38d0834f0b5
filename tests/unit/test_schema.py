"""The JSON schema that `build.py schema` writes accepts the real spec file and rejects typos."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest
import yaml

from image.spec import DEFAULT_SPEC, json_schema

pytestmark = pytest.mark.unit


def test_schema_accepts_the_default_spec_file() -> None:
    jsonschema.validate(yaml.safe_load(DEFAULT_SPEC.read_text()), json_schema())


@pytest.mark.parametrize(
    "path",
    [("profiles", "dev", "accelerator"), ("common", "disk"), ("profiles", "rhel", "base")],
)
def test_schema_rejects_unknown_keys(path: tuple[str, ...]) -> None:
    document = copy.deepcopy(yaml.safe_load(DEFAULT_SPEC.read_text()))
    node = document
    for key in path:
        node = node[key]
    node["no_such_key"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, json_schema())


def test_committed_schema_is_current() -> None:
    committed = DEFAULT_SPEC.with_name("image.schema.json").read_text()
    assert json.loads(committed) == json_schema(), "run `python build.py schema`"
