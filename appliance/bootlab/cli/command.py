"""What a command table is made of (in the spirit of mkosi's `ConfigSetting`/`Verb` tables):
each noun module declares its commands as `Command` entries, and the parser, the `--json`
flag, its handling and shell completion all come from those entries.

A handler returns a `Shown` (what to print, with `--json` or without) or, for the
entrypoints and interactive commands that print as they go, an exit code."""

from __future__ import annotations

import argparse
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from bootlab.errors import Exit
from bootlab.paths import Paths

T = TypeVar("T")


class Kind(enum.Enum):
    CLIENT = "client"  # bootlabd does the work, asked over its socket
    LOCAL = "local"  # the work happens in this process, as the user running it
    ENTRYPOINT = "entrypoint"  # a systemd unit's ExecStart=


@dataclass(frozen=True)
class Shown(Generic[T]):
    """A command's result: `document` is what `--json` prints (by default the value itself,
    a reply from bootlabd being its own JSON), `render` shows the value to a person. With
    `--json`, stdout carries only the document: `notes` go to stderr after it."""

    value: T
    render: Callable[[T], None]
    document: Any = None
    exit_code: int = Exit.OK
    notes: tuple[str, ...] = ()

    def json(self) -> Any:
        return self.value if self.document is None else self.document


Handler = Callable[[argparse.Namespace, Paths], "Shown[Any] | int"]


@dataclass(frozen=True)
class Arg:
    """One argument, as argparse takes it: `flags` are the name of a positional or the
    option strings; the rest is passed on when set."""

    flags: tuple[str, ...]
    help: str | None = None
    type: Callable[[str], Any] | None = None
    default: Any = None
    choices: tuple[str, ...] | None = None
    nargs: str | None = None
    metavar: str | None = None
    dest: str | None = None
    action: str | None = None
    required: bool = False

    @property
    def positional(self) -> bool:
        return not self.flags[0].startswith("-")

    @property
    def options(self) -> list[str]:
        """The long options, for completion."""
        return [flag for flag in self.flags if flag.startswith("--")]

    def add(self, parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup) -> None:
        settings = {
            "help": self.help,
            "type": self.type,
            "default": self.default,
            "choices": self.choices,
            "nargs": self.nargs,
            "metavar": self.metavar,
            "dest": self.dest,
            "action": self.action,
        }
        if self.required:
            settings["required"] = True
        parser.add_argument(*self.flags, **{k: v for k, v in settings.items() if v is not None})


@dataclass(frozen=True)
class OneOf:
    """Arguments that exclude each other (at most one; exactly one when `required`)."""

    args: tuple[Arg, ...]
    required: bool = False

    def add(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_mutually_exclusive_group(required=self.required)
        for arg in self.args:
            arg.add(group)


@dataclass(frozen=True)
class Command:
    """`bootlab NOUN VERB ...`, or `bootlab NOUN ...` when `verb` is None."""

    noun: str
    verb: str | None
    help: str
    handler: Handler
    kind: Kind
    args: tuple[Arg | OneOf, ...] = ()
    json: bool = False  # takes --json: the handler returns a Shown
    defaults: Mapping[str, str] = field(default_factory=dict)  # set on the namespace

    @property
    def words(self) -> tuple[str, ...]:
        return (self.noun,) if self.verb is None else (self.noun, self.verb)

    @property
    def flat_args(self) -> list[Arg]:
        return [a for arg in self.args for a in (arg.args if isinstance(arg, OneOf) else (arg,))]


def command(
    words: str,
    help: str,
    handler: Handler,
    *args: Arg | OneOf,
    kind: Kind = Kind.CLIENT,
    json: bool = False,
    defaults: Mapping[str, str] | None = None,
) -> Command:
    """A table's entry as it reads best: "model pull" (or a noun alone, "status"), its help,
    its handler, then its arguments."""
    noun, _, verb = words.partition(" ")
    return Command(noun, verb or None, help, handler, kind, args, json, defaults or {})


def boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "yes", "1"):
        return True
    if value in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"'{text}' is not true or false")


# Arguments several commands take.
NAME = Arg(("name",))
TLS_VERIFY = Arg(("--tls-verify",), type=boolean, default=True, metavar="BOOL")
