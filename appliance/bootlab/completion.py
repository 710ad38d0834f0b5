"""Shell completion, made from the argparse tree so it never lags behind the commands."""

from __future__ import annotations

import argparse


def _words(parser: argparse.ArgumentParser, prefix: str, table: dict[str, list[str]]) -> None:
    words: list[str] = []
    for action in parser._actions:
        words += [option for option in action.option_strings if option.startswith("--")]
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                words.append(name)
                _words(sub, f"{prefix} {name}".strip(), table)
        elif action.choices and not action.option_strings:
            words += [str(choice) for choice in action.choices]
    table[prefix] = words


def bash(parser: argparse.ArgumentParser) -> str:
    table: dict[str, list[str]] = {}
    _words(parser, "", table)
    cases = "\n".join(
        f'        "{path}") words="{" ".join(words)}" ;;' for path, words in sorted(table.items())
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
