"""Samples to tokens with the model's own chat template; the loss is taken on the
assistant's tokens only (`labels` is -100 elsewhere).

The template renders the whole conversation once; rendering each prefix of it finds where
each message starts, and the tokenizer's offsets map characters to tokens. A template that
does not render prefixes as prefixes cannot be split this way and is refused by name."""

from __future__ import annotations

import json
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IGNORE = -100  # what transformers' loss skips

# Markup of the common chat templates: data that already carries one was rendered for some
# model, and training this one on it teaches the wrong format.
KNOWN_MARKUP = {
    "<|im_start|>": "ChatML (Qwen, Hermes)",
    "<|start_header_id|>": "Llama 3",
    "[INST]": "Llama 2 / Mistral",
    "<|user|>": "Granite / Zephyr",
    "<|assistant|>": "Granite / Zephyr",
    "<start_of_turn>": "Gemma",
    "<|eot_id|>": "Llama 3",
}


@dataclass(frozen=True)
class Sample:
    # Arrays of C ints, not tuples of Python ints: a dataset of 100 M tokens stays 800 MB.
    input_ids: Sequence[int]
    labels: Sequence[int]
    trained_tokens: int  # labels that are not IGNORE: what the loss is averaged over


def sample(input_ids: Sequence[int], labels: Sequence[int]) -> Sample:
    trained = sum(1 for label in labels if label != IGNORE)
    return Sample(array("i", input_ids), array("i", labels), trained)


class DataError(Exception):
    """Problems found in a dataset, each `file:line: what`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load(tokenizer: Any, path: Path, max_seq_len: int, *, max_errors: int = 10) -> list[Sample]:
    """Every sample of a messages JSONL file, or a DataError listing what is wrong (all of it
    is found before any compute is spent)."""
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(
            [
                f"{path}: the model's tokenizer has no chat template, so it cannot be trained on "
                "conversations (add one to tokenizer_config.json)"
            ]
        )
    foreign = {
        mark: name for mark, name in KNOWN_MARKUP.items() if mark not in tokenizer.chat_template
    }
    special = {token for token in tokenizer.all_special_tokens if token}
    samples: list[Sample] = []
    problems: list[str] = []
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                messages = json.loads(raw)["messages"]
                samples.append(encode(tokenizer, messages, max_seq_len, foreign, special))
            except ValueError as error:
                problems.append(f"{path}:{number}: {error}")
                if len(problems) >= max_errors:
                    problems.append(f"{path}: stopped after {max_errors} problems")
                    break
            except (KeyError, TypeError):
                problems.append(f"{path}:{number}: not a messages sample (import it again)")
    if problems:
        raise DataError(problems)
    if not samples:
        raise DataError([f"{path}: no samples"])
    return samples


def encode(
    tokenizer: Any,
    messages: list[dict[str, str]],
    max_seq_len: int,
    foreign: dict[str, str],
    special: set[str],
) -> Sample:
    for message in messages:
        content = message["content"]
        for mark, template in foreign.items():
            if mark in content:
                raise ValueError(
                    f"a {message['role']} message contains '{mark}', markup of the {template} "
                    "chat template: this data was rendered for another model; import the plain "
                    "messages instead"
                )
        for token in special:
            if token in content:
                raise ValueError(
                    f"a {message['role']} message contains the special token '{token}'; "
                    "the chat template adds those, the data must not"
                )
    text, spans = _render(tokenizer, messages)
    bos = getattr(tokenizer, "bos_token", None)
    encoded = tokenizer(
        text,
        add_special_tokens=not (bos and text.startswith(bos)),
        return_offsets_mapping=True,
    )
    input_ids = list(encoded["input_ids"])
    if len(input_ids) > max_seq_len:
        raise ValueError(
            f"{len(input_ids)} tokens, more than train.max_seq_len ({max_seq_len}): shorten "
            "the sample or raise max_seq_len (up to the model's context)"
        )
    labels = [IGNORE] * len(input_ids)
    for index, (start, end) in enumerate(encoded["offset_mapping"]):
        if end > start and any(low <= start < high for low, high in spans):
            labels[index] = input_ids[index]
    if all(label == IGNORE for label in labels):
        raise ValueError("no assistant tokens to learn from once the template is applied")
    return sample(input_ids, labels)


def _render(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The conversation as text, and the character spans of the assistant's answers (from
    where its content starts to where the next message starts: the end-of-turn markup is
    learned too, so the model learns to stop)."""
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception as error:  # jinja's TemplateError, and whatever a template raises
        raise ValueError(f"the model's chat template refuses this sample: {error}") from None
    spans = []
    start = 0
    for index, message in enumerate(messages):
        if index == len(messages) - 1:
            end = len(text)
        else:
            prefix = tokenizer.apply_chat_template(messages[: index + 1], tokenize=False)
            if not text.startswith(prefix):
                raise ValueError(
                    "the model's chat template does not render a conversation's start the "
                    "same way alone and in the whole; cannot tell which tokens to learn"
                )
            end = len(prefix)
        if message["role"] == "assistant":
            found = text.find(message["content"], start, end)
            if found < 0:
                raise ValueError(
                    "the model's chat template changes the assistant's text; cannot tell "
                    "which tokens to learn"
                )
            spans.append((found, end))
        start = end
    return text, spans
