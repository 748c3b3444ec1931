"""A chat LM as an RM: the score is the log-likelihood of the response given the prompt.

This is the RM definition of the LASeR authors' code for the reasoning pool (zephyr-7b-alpha,
Qwen1.5-7B-Chat, Eurus-7b-kto, OLMo-7B-Instruct): an LM that finds a response likely rates it well.

What the authors' code feeds these RMs (scripts/utils/reward_model.py in their release): the policy's
prompt (their zero-shot chain-of-thought prompt around the question) followed by the response, as one
plain text, no chat template, tokenised with the tokenizer's special tokens, scored by the mean
log-likelihood over all of its tokens. `rm_pool=reasoning_7b` matches the input
(`use_chat_template: false`: `LazyHFRewardModel`'s plain-text rule); two things differ on purpose: the
prompt's tokens are not scored (a mean over prompt and response would rank long responses by the
response and short ones mostly by the prompt they share), and eos is scored after a plain text, so
the LM also judges where the response stops. With `use_chat_template: true` (the default, as for every
HF RM) a chat LM scores the raw question and the response in its own template, as RewardBench scores
DPO models (`ImplicitDPORM`).
"""

from __future__ import annotations

from typing import Any

import torch

from laser.hf import chat_text
from laser.policy.logps import token_logps
from laser.rewards.base import ScoringBatch
from laser.rewards.hf_base import LazyHFRewardModel
from laser.rewards.rm_inputs import Encoded, pad_right


class LikelihoodRM(LazyHFRewardModel):
    """Scores a response by its (mean, when `normalise_by_length`) per-token log-probability under a
    causal LM, given the prompt. The prompt's tokens are masked out: only the response is scored.

    Loads lazily on the first `score` call. Arguments as for `ClassifierRM`: what the RM reads is
    `LazyHFRewardModel`'s rule (the module docstring says how it meets the authors' code); sequences
    longer than `max_length` lose the middle of the prompt, never the response. Length normalisation
    stops the score from simply preferring short responses (a sum of log-probs falls with every token).
    """

    auto_class = "AutoModelForCausalLM"

    def __init__(self, model_name_or_path: str, tokenizer_name_or_path: str | None = None, batch_size: int = 4,
                 max_length: int = 1024, device: str = "cpu", dtype: str = "float32",
                 trust_remote_code: bool = False, use_chat_template: bool = True,
                 normalise_by_length: bool = True, allow_pickle_weights: bool = False) -> None:
        super().__init__(model_name_or_path, tokenizer_name_or_path, batch_size, max_length, device, dtype,
                         trust_remote_code, use_chat_template)
        self.normalise_by_length = bool(normalise_by_length)
        self.allow_pickle_weights = bool(allow_pickle_weights)  # trust pickled .bin weights of this RM

    def encode(self, prompt: str, response: str) -> Encoded:
        """Token ids of prompt + response, and how many leading ids belong to the prompt, before any
        truncation."""
        prefix = chat_text(self.tokenizer, prompt, None, self.use_chat_template)
        if prefix is None:
            ids, n_prompt = split_prompt_tokens(self.tokenizer, prompt, response, add_special_tokens=True)
            # Plain text has no end-of-turn marker: score eos too, so the LM also judges where the
            # response stops, and an empty response still has a token to score.
            if self.tokenizer.eos_token_id is not None:
                ids.append(self.tokenizer.eos_token_id)
        else:
            full = chat_text(self.tokenizer, prompt, response, True)
            # The response part is everything the assistant turn adds (with its end-of-turn tokens);
            # a template whose generation prompt is not a prefix of the full chat gets the raw response.
            suffix = full[len(prefix) :] if full.startswith(prefix) else response
            # A chat template writes BOS into the text itself.
            ids, n_prompt = split_prompt_tokens(self.tokenizer, prefix, suffix, add_special_tokens=False)
        return ids, n_prompt

    def prepare(self, batch: ScoringBatch) -> list[Encoded]:
        """Each response's (token ids, prompt length), cut to `max_length` without cutting the response."""
        pairs = zip(self.prompt_texts(batch), batch.responses, strict=True)
        return [self.fit(self.encode(prompt, response)) for prompt, response in pairs]

    def score_chunk(self, encoded: list[tuple[list[int], int]]) -> torch.Tensor:
        """Mean (or summed) log-prob of each response's tokens, float32 on the CPU."""
        total, count = self.response_logprobs(self.model, encoded)
        if not self.normalise_by_length:
            return total
        # clamp: a response with no tokens at all (empty, without eos) scores 0 rather than NaN.
        return total / count.clamp(min=1)

    def response_logprobs(
        self, model: Any, encoded: list[tuple[list[int], int]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per item: the summed log-prob of its response tokens under `model` (one padded forward
        pass) and how many tokens that is; float32 on the CPU. `ImplicitDPORM` calls it twice."""
        input_ids, attention, scored = pad_encoded(encoded, self.tokenizer.pad_token_id)
        logits = self.forward(model, input_ids, attention).logits
        # Token t is predicted by the logits at t - 1, so the first token is never scored. The scored tokens'
        # log-probs are gathered on the model's device (chunked, no full-vocabulary float32 copy): only
        # [batch, tokens] moves to the CPU.
        next_tokens = torch.nn.functional.pad(input_ids[:, 1:], (0, 1)).to(logits.device)
        token_logprobs = token_logps(logits, next_tokens)[:, :-1].float().cpu()
        mask = scored[:, 1:]
        return (token_logprobs * mask).sum(-1), mask.sum(-1)


def pad_encoded(
    encoded: list[tuple[list[int], int]], pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded `input_ids`, `attention_mask` and a mask of the response tokens (those after each
    item's prompt), all [len(encoded), longest]."""
    input_ids, attention = pad_right([ids for ids, _ in encoded], pad_token_id)
    scored = torch.zeros(input_ids.shape, dtype=torch.bool)
    for row, (ids, n_prompt) in enumerate(encoded):
        scored[row, n_prompt : len(ids)] = True
    return input_ids, attention, scored


def split_prompt_tokens(
    tokenizer: Any, prefix: str, suffix: str, add_special_tokens: bool
) -> tuple[list[int], int]:
    """Token ids of `prefix + suffix` and the number of leading ids that encode `prefix`.

    The suffix is kept as tokenised in context when the tokens of the whole start with the tokens
    of `prefix`. When a token spans the boundary (BPE merged the prompt's last characters with the
    response's first), the two parts are tokenised apart and joined, so the ids after the prompt
    are still exactly the suffix's.
    """
    prefix_ids = list(tokenizer(prefix, add_special_tokens=add_special_tokens)["input_ids"])
    full_ids = list(tokenizer(prefix + suffix, add_special_tokens=add_special_tokens)["input_ids"])
    if full_ids[: len(prefix_ids)] == prefix_ids:
        return full_ids, len(prefix_ids)
    suffix_ids = list(tokenizer(suffix, add_special_tokens=False)["input_ids"])
    return prefix_ids + suffix_ids, len(prefix_ids)
