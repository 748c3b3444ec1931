"""What a Hugging Face RM reads: token ids of (prompt, response) that fit its length, right padded.

An RM sees what its authors trained it on (`LazyHFRewardModel.prompt_texts` picks the prompt, the
adapters their chat template); these pure functions then make the ids fit and pad them:

- `fit_to_length`: the response is never cut to make room. Over `max_length`, the prompt loses its
  middle (its head keeps the chat header and the question's start, its tail the question's end and the
  assistant header), as LongBench truncates long inputs. A prompt cut from the left would lose BOS and
  the template's header, which no chat RM was trained without. Only a response longer than
  `max_length` by itself is cut: its first `max_length` tokens are kept, without the prompt.
- `free_pad_id` + `pad_right`: rows are right padded with an id that occurs in none of them. An HF
  sequence classifier finds each row's last token through `config.pad_token_id` (the rightmost token
  that is not it, or the first pad minus one); with pad = eos, a response ending in eos would be read
  one token early. With an id no row holds, both rules land on the last attended token,
  `attention_mask.sum(-1) - 1`, for every row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from laser.hf import chat_text

Encoded = tuple[list[int], int]  # token ids and how many leading ids are the prompt


def encode_pair(tokenizer: Any, prompt: str, response: str, chat: bool) -> Encoded:
    """Token ids of the whole text an RM reads and how many leading ids are the prompt's, before any
    truncation. `chat`: the prompt (the raw question) and the response as a user and an assistant turn in
    the tokenizer's chat template, tokenised without added special tokens (the template writes BOS);
    otherwise `prompt + response` as plain text with the tokenizer's special tokens. Shared by the HF
    classifier and the vLLM client, so both send a model the same ids."""
    prefix = chat_text(tokenizer, prompt, None, True) if chat else prompt
    ids = list(tokenizer(full_text(tokenizer, prompt, response, chat), add_special_tokens=not chat)["input_ids"])
    prefix_ids = tokenizer(prefix, add_special_tokens=not chat)["input_ids"]
    return ids, common_prefix_length(prefix_ids, ids)


def full_text(tokenizer: Any, prompt: str, response: str, chat: bool) -> str:
    """The text `encode_pair` tokenises: the chat-formatted conversation, or `prompt + response`."""
    return chat_text(tokenizer, prompt, response, True) if chat else prompt + response


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading ids `a` and `b` share: the prompt's ids in a tokenised prompt + response (a
    token merged across the boundary counts as the response's)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def fit_to_length(ids: list[int], n_prompt: int, max_length: int) -> tuple[list[int], int, bool]:
    """`ids` (prompt then response) cut to at most `max_length`: the prompt's middle goes first (its
    first ceil(k/2) and last floor(k/2) ids kept, k the room the response leaves). Returns the ids, the
    new prompt length and whether the response itself had to be cut (then its first `max_length` ids
    are kept and the prompt is dropped)."""
    if len(ids) <= max_length:
        return ids, n_prompt, False
    prompt, response = ids[:n_prompt], ids[n_prompt:]
    if len(response) > max_length:
        return response[:max_length], 0, True
    room = max_length - len(response)
    head, tail = room - room // 2, room // 2
    kept = prompt[:head] + (prompt[len(prompt) - tail :] if tail else [])
    return kept + response, len(kept), False


def free_pad_id(rows: Sequence[Sequence[int]], preferred: int | None, vocab_size: int) -> int:
    """A pad id that occurs in no row: `preferred` (the model's pad id) when no row holds it, else the
    smallest such id below `vocab_size`."""
    used = {token for row in rows for token in row}
    if preferred is not None and 0 <= preferred < vocab_size and preferred not in used:
        return int(preferred)
    free = next((token for token in range(vocab_size) if token not in used), None)
    if free is None:  # only a batch holding every id of the vocabulary gets here
        raise ValueError(f"no pad id is free: the batch uses all {vocab_size} ids of the vocabulary")
    return free


def pad_right(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`input_ids` and `attention_mask` [len(rows), longest]: each row from position 0, then `pad_id`."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        input_ids[index, : len(row)] = torch.tensor(list(row), dtype=torch.long)
        attention[index, : len(row)] = 1
    return input_ids, attention
