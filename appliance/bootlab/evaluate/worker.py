"""What evaluation needs of the model itself, in the ML venv: the mean log-probability of
each choice as the assistant's answer (the highest is the model's pick), or the model's own
answers (greedy). `python -m bootlab.evaluate.worker PLAN.json OUT.json`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bootlab.errors import Exit


def main(argv: list[str] | None = None) -> int:
    plan_path, out_path = (sys.argv[1:] if argv is None else argv)[:2]
    plan = json.loads(Path(plan_path).read_text())

    import torch  # noqa: PLC0415 - the ML venv's
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(plan["model_dir"])
    model = AutoModelForCausalLM.from_pretrained(plan["model_dir"]).to(device).eval()
    with torch.no_grad():
        if plan["kind"] == "choice":
            result: list[Any] = [
                pick(model, tokenizer, item["question"], item["choices"], device)
                for item in plan["items"]
            ]
        else:
            result = [
                _answer(model, tokenizer, item["question"], plan["max_new_tokens"], device)
                for item in plan["items"]
            ]
    Path(out_path).write_text(json.dumps(result))
    return Exit.OK


def _prompt(tokenizer: Any, question: str) -> str:
    messages = [{"role": "user", "content": question}]
    if getattr(tokenizer, "chat_template", None):
        return str(
            tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )
    return f"Question: {question}\nAnswer: "


def pick(
    model: Any, tokenizer: Any, question: str, choices: list[str], device: Any
) -> dict[str, Any]:
    import torch  # noqa: PLC0415

    prefix = tokenizer(_prompt(tokenizer, question), add_special_tokens=False)["input_ids"]
    scores = []
    for choice in choices:
        answer = tokenizer(choice, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prefix + answer], device=device)
        logits = model(input_ids=ids, use_cache=False).logits[0, len(prefix) - 1 : -1]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        chosen = logprobs.gather(1, torch.tensor(answer, device=device)[:, None])
        scores.append(float(chosen.mean()))  # mean: long choices are not penalised
    best = max(range(len(choices)), key=scores.__getitem__)
    return {"pick": best, "scores": scores}


def _answer(model: Any, tokenizer: Any, question: str, limit: int, device: Any) -> str:
    encoded = tokenizer(_prompt(tokenizer, question), add_special_tokens=False, return_tensors="pt")
    encoded = {k: v.to(device) for k, v in encoded.items()}
    output = model.generate(**encoded, max_new_tokens=limit, do_sample=False)
    return str(
        tokenizer.decode(output[0, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
    )


if __name__ == "__main__":
    sys.exit(main())
