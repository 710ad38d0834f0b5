"""The `bootlab` command line: the admin's one entry point inside the appliance.

Each noun module declares its commands in one table (`COMMANDS`, see `command.Command`);
this module walks the tables into the argparse parser, runs the chosen handler and prints
its result, as JSON with `--json` or for a person, in one place. Client commands ask bootlabd
over its socket (the CLI is only a client); local tools and the entrypoints systemd runs
(`serve run`, `train run`, `gpu cdi`, `upgrade check`) work in this process. Imports stay
light on the client path: `bootlab status` must answer quickly, so every heavy module is
imported by the handler that needs it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from bootlab.cli import chat, completion, data, models, services, system, taxonomy
from bootlab.cli.command import Arg, Command, Kind, OneOf, Shown
from bootlab.cli.output import print_json
from bootlab.errors import Exit, reported
from bootlab.paths import Paths


def cmd_completion(args: argparse.Namespace, paths: Paths) -> int:
    print(completion.bash(COMMANDS))
    return Exit.OK


# The order of the tables is the order of `bootlab --help`.
COMMANDS: tuple[Command, ...] = (
    *system.COMMANDS,
    *models.COMMANDS,
    *data.COMMANDS,
    *taxonomy.COMMANDS,
    *services.COMMANDS,
    *chat.COMMANDS,
    Command(
        "completion",
        None,
        "Shell completion script",
        cmd_completion,
        Kind.LOCAL,
        args=(Arg(("shell",), choices=("bash",)),),
    ),
)

# The help line of each noun that groups verbs (`bootlab model ...`).
NOUNS: dict[str, str] = {
    **system.NOUNS,
    **models.NOUNS,
    **data.NOUNS,
    **taxonomy.NOUNS,
    **services.NOUNS,
    **chat.NOUNS,
}


class _Version(argparse.Action):
    """`--version`, which reads the version only when asked (see `bootlab.__getattr__`)."""

    def __init__(self, option_strings: Sequence[str], dest: str) -> None:
        super().__init__(
            option_strings,
            dest=argparse.SUPPRESS,
            default=argparse.SUPPRESS,
            nargs=0,
            help="show program's version number and exit",
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from bootlab import __version__  # noqa: PLC0415

        print(f"bootlab {__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bootlab",
        description="Manage the bootlab AI appliance: registry auth, models, serving, training.",
    )
    parser.add_argument("--version", action=_Version)
    parser.set_defaults(command_entry=None)
    top = parser.add_subparsers(title="commands", metavar="COMMAND")
    nouns: dict[str, Any] = {}
    for command in COMMANDS:
        if command.verb is None:
            group, name = top, command.noun
        else:
            if command.noun not in nouns:
                nouns[command.noun] = top.add_parser(
                    command.noun, help=NOUNS[command.noun]
                ).add_subparsers(metavar="ACTION", required=True)
            group, name = nouns[command.noun], command.verb
        sub = group.add_parser(name, help=command.help, description=command.help)
        sub.set_defaults(command_entry=command, **command.defaults)
        if command.json:
            sub.add_argument("--json", action="store_true", help="print JSON for scripts")
        for arg in command.args:
            arg.add(sub)
    return parser


def show(result: Shown[Any] | int, as_json: bool) -> int:
    """Print what a handler returned: the JSON document, or the form for a person."""
    if not isinstance(result, Shown):
        return int(result)
    if as_json:
        print_json(result.json())
        for note in result.notes:
            print(note, file=sys.stderr)
    else:
        result.render(result.value)
    return int(result.exit_code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command | None = args.command_entry
    if command is None:
        parser.print_help()
        return Exit.OK
    return reported(
        lambda: show(command.handler(args, Paths.from_env()), command.json and args.json)
    )


__all__ = ["COMMANDS", "NOUNS", "Arg", "Command", "Kind", "OneOf", "build_parser", "main"]
