"""How prompts become the policy's input ids: an optional chat template, then a cut to the token budget.

`policy.truncation_side` says which tokens a prompt longer than `max_prompt_tokens` loses:

- `left` (the default): the first ones; the question at the end of a prompt survives, its beginning
  goes. This is the tokenizer's own truncation, so the ids are exactly what they always were.
- `middle`: the ones in the middle, keeping the first `max_tokens // 2` and the last `max_tokens -
  max_tokens // 2`. LongBench truncates this way (its `pred.py`): a long-context prompt opens with the
  instruction and ends with the question, and a passage cut in the middle keeps its start and its end.

`policy.chat_template=true` renders each prompt as one user turn with the tokenizer's chat template and
its generation prompt, as LongBench does for chat models (when the tokenizer has no template, prompts
stay as they are: a base model). The template's own special tokens replace the tokenizer's BOS. The cut
comes after the template, so the template's header (at the start) and the assistant turn's opening (at
the end) survive a middle cut whenever each is shorter than half the budget (a few tokens for the
usual templates). LongBench cuts the raw prompt, then adds the template; cutting the rendered ids
instead keeps the result within the budget without re-tokenising the cut text.

`prompt_budget` turns `max_prompt_tokens: null` into the model's window minus the answer's tokens, the
budget LongBench sets per model (`model2maxlen.json`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from laser.errors import LaserConfigError
from laser.hf import chat_text

TRUNCATION_SIDES = ("left", "middle")


def truncate_ids(ids: Sequence[int], max_tokens: int, side: str) -> list[int]:
    """`ids` cut to at most `max_tokens`: the last ones (`left`), or the first `max_tokens // 2` and the
    last `max_tokens - max_tokens // 2` (`middle`). Ids that fit are returned unchanged."""
    if side not in TRUNCATION_SIDES:
        raise LaserConfigError(f"policy.truncation_side={side!r}: must be one of {', '.join(TRUNCATION_SIDES)}")
    if max_tokens < 1:
        raise LaserConfigError(f"policy.max_prompt_tokens={max_tokens}: must be an integer >= 1")
    ids = list(ids)
    if len(ids) <= max_tokens:
        return ids
    if side == "left":
        return ids[len(ids) - max_tokens:]
    head = max_tokens // 2
    return ids[:head] + ids[len(ids) - (max_tokens - head):]


def prompt_ids(tokenizer: Any, prompt: str, max_tokens: int, side: str, chat_template: bool) -> list[int]:
    """One prompt's input ids: chat-formatted when asked for (and the tokenizer has a template), else
    with the tokenizer's special tokens (BOS), then cut to `max_tokens` on `side`."""
    text = chat_text(tokenizer, prompt, None, chat_template)
    # verbose=False: no "longer than the maximum sequence length" warning; the cut below fits the budget
    ids = tokenizer(prompt if text is None else text, add_special_tokens=text is None, verbose=False)["input_ids"]
    return truncate_ids(ids, max_tokens, side)


def left_padded(rows: list[list[int]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """`input_ids` and `attention_mask` [B, longest], padded on the left (generation continues from
    the last prompt token)."""
    width = max((len(r) for r in rows), default=0)
    ids = [[pad_token_id] * (width - len(r)) + r for r in rows]
    mask = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
    return {"input_ids": torch.tensor(ids, dtype=torch.long), "attention_mask": torch.tensor(mask, dtype=torch.long)}


def encode_prompts(tokenizer: Any, prompts: list[str], max_tokens: int, side: str = "left",
                   chat_template: bool = False) -> dict[str, torch.Tensor]:
    """Left-padded `input_ids` and `attention_mask` (CPU) of `prompts`, each cut to `max_tokens` on
    `side` after the optional chat template. Left, without a template: the tokenizer's own truncation,
    which keeps its BOS."""
    if side == "left" and not chat_template:
        tokenizer.truncation_side = "left"
        enc = tokenizer(prompts, return_tensors="pt", padding=True, truncation=True, max_length=max_tokens,
                        add_special_tokens=True)
        return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    return left_padded([prompt_ids(tokenizer, p, max_tokens, side, chat_template) for p in prompts],
                       tokenizer.pad_token_id)


def prompt_budget(max_prompt_tokens: int | None, model_window: int | None, max_new_tokens: int) -> int:
    """`max_prompt_tokens`, or (when null) the model's window (`max_position_embeddings`) minus
    `max_new_tokens`, so prompt and answer fit the window together."""
    if max_prompt_tokens is not None:
        return max_prompt_tokens
    if not model_window:
        raise LaserConfigError("policy.max_prompt_tokens=null takes the model's window, but its config has no "
                               "max_position_embeddings: set policy.max_prompt_tokens=<tokens>")
    if model_window <= max_new_tokens:
        raise LaserConfigError(f"policy.max_prompt_tokens=null: the model's window ({model_window} tokens) leaves "
                               f"no room for a prompt beside policy.max_new_tokens={max_new_tokens}")
    return model_window - max_new_tokens
