"""`bootlab chat`: talk to the served model through its OpenAI API, straight to the backend
(bootlabd only says where it is)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from bootlab.cli.calls import ask
from bootlab.cli.command import Arg, Kind, command
from bootlab.errors import Exit, die
from bootlab.paths import Paths

if TYPE_CHECKING:
    from bootlab.api import ServiceState


def cmd_chat(args: argparse.Namespace, paths: Paths) -> int:
    """Talk to the served model through its OpenAI API, straight to the backend."""
    from bootlab import chat  # noqa: PLC0415

    endpoint, model = args.endpoint, args.model
    if endpoint is None or model is None:
        state: ServiceState = ask(paths, "GET", "/v1/services/serve")
        if not state.endpoint:
            raise die(
                "nothing is being served",
                hint="bootlab serve start [MODEL]",
                exit_code=Exit.CONFLICT,
            )
        endpoint = endpoint or state.endpoint
        model = model or state.model
    key = chat.api_key(paths)
    if args.query is not None:
        print(
            chat.complete(
                endpoint,
                model,
                [{"role": "user", "content": args.query}],
                key,
                max_tokens=args.max_tokens,
            )
        )
        return Exit.OK
    return chat.interactive(endpoint, model, key, max_tokens=args.max_tokens)


NOUNS: dict[str, str] = {}

COMMANDS = (
    command(
        "chat",
        "Chat with the served model (interactive, or one question with -q)",
        cmd_chat,
        Arg(("-q", "--query"), help="ask one question, print the answer"),
        Arg(("--model",), help="default: what bootlab-serve serves"),
        Arg(("--endpoint",), help="default: bootlab-serve's, e.g. http://127.0.0.1:8000/v1"),
        Arg(("--max-tokens",), type=int, default=256),
        kind=Kind.LOCAL,
    ),
)
