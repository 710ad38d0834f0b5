"""`bootlab chat`: the OpenAI chat API of whatever bootlab-serve serves, asked directly."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any

from bootlab import config
from bootlab.apikey import served_key
from bootlab.errors import Exit, die
from bootlab.paths import Paths

TIMEOUT_S = 300.0


def api_key(paths: Paths) -> str | None:
    """$BOOTLAB_API_KEY, else the key in serve.api_key_file (an error when it is unreadable
    here: the server would refuse us)."""
    try:
        path = config.load(paths).serve.api_key_file
    except Exception:  # an unreadable config is serve's problem, not chat's
        path = None
    return served_key(path)


def complete(
    endpoint: str, model: str, messages: list[dict[str, str]], key: str | None, *, max_tokens: int
) -> str:
    body = json.dumps({"model": model, "messages": messages, "max_tokens": max_tokens}).encode()
    request = urllib.request.Request(  # noqa: S310 - the served endpoint, http(s)
        endpoint.rstrip("/") + "/chat/completions",
        data=body,
        headers={
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {key}"} if key else {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
            answer: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as error:
        detail = error.read(2000).decode(errors="replace")
        raise die(
            f"{endpoint} answered HTTP {error.code}: {detail[:300]}",
            hint="check the model name and the API key",
            exit_code=Exit.UNREACHABLE,
        ) from None
    except (urllib.error.URLError, OSError) as error:
        raise die(
            f"cannot reach {endpoint}: {getattr(error, 'reason', error)}",
            hint="is it serving? bootlab serve status",
            exit_code=Exit.UNREACHABLE,
        ) from None
    try:
        return str(answer["choices"][0]["message"]["content"])
    except (KeyError, IndexError, TypeError):
        raise die(f"{endpoint} answered without a message: {str(answer)[:300]}") from None


def interactive(endpoint: str, model: str, key: str | None, *, max_tokens: int) -> int:
    print(f"chatting with {model} at {endpoint} (empty line or Ctrl-D to quit)")
    history: list[dict[str, str]] = []
    while True:
        try:
            question = input(">>> ").strip()
        except EOFError:
            print()
            return Exit.OK
        if not question or question in ("/exit", "/quit"):
            return Exit.OK
        history.append({"role": "user", "content": question})
        reply = complete(endpoint, model, history, key, max_tokens=max_tokens)
        history.append({"role": "assistant", "content": reply})
        print(reply, flush=True)
        sys.stdout.flush()
