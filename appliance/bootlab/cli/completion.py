"""Shell completion, made from the command tables so it never lags behind the commands."""

from __future__ import annotations

from collections.abc import Sequence

from bootlab.cli.command import Command

ROOT_OPTIONS = ("--help", "--version")


def words(commands: Sequence[Command]) -> dict[str, list[str]]:
    """What may follow each command path: "" → nouns, "model" → verbs, "model pull" →
    its long options and the choices of its positionals."""
    table: dict[str, list[str]] = {"": list(ROOT_OPTIONS)}
    for command in commands:
        path = ""
        for word in command.words:
            if word not in table[path]:
                table[path].append(word)
            path = f"{path} {word}".strip()
            table.setdefault(path, ["--help"])
        table[path] += ["--json"] if command.json else []
        for arg in command.flat_args:
            table[path] += list(arg.choices or ()) if arg.positional else arg.options
    return table


def bash(commands: Sequence[Command]) -> str:
    cases = "\n".join(
        f'        "{path}") words="{" ".join(found)}" ;;'
        for path, found in sorted(words(commands).items())
    )
    return f"""\
# bash completion for bootlab; install: bootlab completion bash > /etc/bash_completion.d/bootlab
_bootlab() {{
    local path="" word words i
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        [[ $word == -* ]] && continue
        path="${{path:+$path }}$word"
    done
    case "$path" in
{cases}
        *) words="" ;;
    esac
    COMPREPLY=($(compgen -W "$words" -- "${{COMP_WORDS[COMP_CWORD]}}"))
}}
complete -F _bootlab bootlab"""
