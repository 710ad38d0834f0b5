"""The command tables behind `bootlab`: the parser, `--json`, completion, the README's list
and the units' ExecStart= all agree with them; replies read as the API's models."""

from __future__ import annotations

import argparse
import io
import json
import re
import typing
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from bootlab import api
from bootlab.cli import COMMANDS, NOUNS, build_parser, completion, show
from bootlab.cli.calls import Reply, _reply, plain
from bootlab.cli.command import Kind, Shown
from bootlab.errors import Exit
from bootlab.workload import state
from pydantic import BaseModel

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
BY_WORDS = {command.words: command for command in COMMANDS}


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def leaves(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every parser that runs a command, by its words."""
    found = {}
    for name, sub in subparsers(parser).items():
        path = (*words, name)
        found.update(leaves(sub, path) if subparsers(sub) else {path: sub})
    return found


def test_every_command_in_the_tables_is_in_the_parser_and_runs_its_handler() -> None:
    parsers = leaves(build_parser())
    assert set(parsers) == set(BY_WORDS)
    assert len(BY_WORDS) == len(COMMANDS), "two commands with the same words"
    for words, parser in parsers.items():
        assert parser.get_default("command_entry") is BY_WORDS[words]


def test_every_noun_has_its_help_and_verbs() -> None:
    with_verbs = {command.noun for command in COMMANDS if command.verb is not None}
    assert with_verbs == set(NOUNS)
    assert not with_verbs & {command.noun for command in COMMANDS if command.verb is None}


def test_json_exactly_where_the_table_says() -> None:
    for words, parser in leaves(build_parser()).items():
        options = {option for action in parser._actions for option in action.option_strings}
        assert ("--json" in options) == BY_WORDS[words].json, words


def test_json_commands_return_what_the_framework_prints() -> None:
    for command in COMMANDS:
        returns = command.handler.__annotations__["return"]
        assert returns.startswith("Shown[") or not command.json, command.words


def test_completion_knows_every_command_and_option() -> None:
    words = completion.words(COMMANDS)
    script = completion.bash(COMMANDS)
    for command in COMMANDS:
        path = " ".join(command.words)
        assert f'"{path}") words="' in script
        parent = " ".join(command.words[:-1])
        assert command.words[-1] in words[parent]
        for arg in command.flat_args:
            assert set(arg.options) <= set(words[path])
        assert ("--json" in words[path]) == command.json
    assert words[""][:2] == ["--help", "--version"]


def _readme_commands() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Inside the booted image: the appliance") :]
    block = section[section.index("```sh\n") + 6 : section.index("```\n", section.index("```sh"))]
    lines = [line.split("#", 1)[0].split(">", 1)[0].split() for line in block.splitlines()]
    return [line[1:] for line in lines if line and line[0] == "bootlab"]


def test_the_readme_names_only_commands_that_exist() -> None:
    nouns = {command.noun for command in COMMANDS}
    named = 0
    for line in _readme_commands():
        noun, rest = line[0], " ".join(line[1:])
        assert noun in nouns, line
        if noun not in NOUNS:
            verbs: list[str | None] = [None]
        else:
            # `model list|inspect NAME|verify NAME`: each word after the noun or a `|`.
            verbs = list(re.findall(r"(?:^|\|)([a-z][a-z-]*)", rest))
            assert verbs, line
        for verb in verbs:
            command = BY_WORDS.get((noun,) if verb is None else (noun, verb))
            assert command is not None, f"README names `bootlab {noun} {verb}`"
            named += 1
            if len(verbs) == 1:
                known = {flag for arg in command.flat_args for flag in arg.flags}
                for option in re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", rest):
                    assert option in known | {"--json"}, f"{line}: {option}"
    assert named >= 20


def test_the_units_run_exactly_the_entrypoints() -> None:
    run = set()
    for unit in (ROOT / "units").glob("*.service"):
        for line in re.findall(r"^ExecStart=/usr/bin/bootlab (.*)$", unit.read_text(), re.M):
            run.add(tuple(line.split()))
    entrypoints = {c.words for c in COMMANDS if c.kind is Kind.ENTRYPOINT}
    assert run == entrypoints


def _models(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models(arg)]


def test_replies_read_every_api_field_by_attribute() -> None:
    """A reply is a dict: a field named like a dict method (`items`) would read the method."""
    todo = [getattr(api, name) for name in api.__all__ if name != "API_VERSION"]
    seen: set[type[BaseModel]] = set()
    while todo:
        model = todo.pop()
        if not isinstance(model, type) or model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            assert not hasattr(dict, name), f"{model.__name__}.{name}"
            todo += _models(field.annotation)
    assert api.Status in seen and state.TrainingProgress in seen


def test_a_reply_is_the_daemons_json_read_by_attribute() -> None:
    document = {"services": [{"unit": "bootlab-serve.service", "training": None}], "n": 1}
    reply = _reply(json.loads(json.dumps(document)))
    assert isinstance(reply, Reply) and isinstance(reply.services[0], Reply)
    assert reply.services[0].unit == "bootlab-serve.service" and reply.n == 1
    assert json.dumps(reply) == json.dumps(document)  # what --json prints
    assert type(plain(reply)) is dict and type(plain(reply)["services"][0]) is dict
    with pytest.raises(AttributeError):
        _ = reply.missing


def _shown(result: Shown[object] | int, as_json: bool) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = show(result, as_json)
    return code, out.getvalue(), err.getvalue()


def test_json_or_the_human_form_printed_in_one_place() -> None:
    result = Shown({"ok": False}, lambda v: print(f"ok is {v['ok']}"), exit_code=Exit.CORRUPT)
    noted = Shown(result.value, result.render, exit_code=Exit.CORRUPT, notes=("a: broken",))
    assert _shown(result, as_json=False) == (Exit.CORRUPT, "ok is False\n", "")
    assert _shown(noted, as_json=True) == (Exit.CORRUPT, '{\n  "ok": false\n}\n', "a: broken\n")
    local = Shown([1], print, document={"items": [1]})
    assert json.loads(_shown(local, as_json=True)[1]) == {"items": [1]}
    assert _shown(Exit.NOT_FOUND, as_json=True) == (Exit.NOT_FOUND, "", "")
