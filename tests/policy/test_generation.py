"""Sampling in several generate calls (policy.prompts_per_generate, laser/policy/generation.py): the calls
cover the batch in order, each with every prompt's n responses, and the tokens come back prompt-major
without the prompt."""

from __future__ import annotations

import pytest
import torch

from laser.policy.generation import generate_responses


class RecordingModel:
    """A stand-in for `generate`: each returned sequence is its prompt row followed by [prompt id, copy]."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def generate(self, input_ids, attention_mask, num_return_sequences, max_new_tokens):
        self.calls.append(len(input_ids))
        rows = input_ids.repeat_interleave(num_return_sequences, dim=0)
        tail = torch.tensor([[int(row[-1]), copy] for row in input_ids for copy in range(num_return_sequences)])
        return torch.cat([rows, tail], dim=1)


@pytest.mark.parametrize(("per_call", "calls"), [(None, [5]), (2, [2, 2, 1]), (5, [5]), (9, [5])])
def test_calls_of_at_most_the_given_prompts_return_every_response_in_prompt_order(per_call, calls):
    ids = torch.tensor([[0, 0, 10 + p] for p in range(5)])  # left padded, last token = prompt id
    enc = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    model = RecordingModel()
    generated = generate_responses(model, enc, 3, per_call, max_new_tokens=2)
    assert model.calls == calls
    assert generated == [[10 + p, copy] for p in range(5) for copy in range(3)]
