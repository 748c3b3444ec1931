"""A DPO-trained chat model as an RM: its implicit reward against the model it was trained from.

DPO's policy pi satisfies r(x, y) = beta * log(pi(y|x) / pi_ref(y|x)) + const(x), so a DPO model and
its reference together are a reward model. This is how RewardBench scores DPO models such as
zephyr-7b-beta (reference HuggingFaceH4/mistral-7b-sft-beta) or Eurus-7b-kto (reference
openbmb/Eurus-7b-sft): log-probs summed over the response tokens, no length normalisation, beta = 1
(a positive beta does not change which response ranks higher; the paper's beta only rescales).
"""

from __future__ import annotations

from typing import Any

import torch

from laser.errors import LaserConfigError
from laser.hf import load_model, resolve_model_path
from laser.rewards.likelihood import LikelihoodRM


class ImplicitDPORM(LikelihoodRM):
    """score = beta * (log pi(y|x) - log pi_ref(y|x)), both summed over the response's tokens.

    The response tokens are `LikelihoodRM`'s (the raw question and the response in the chat template
    when the tokenizer has one, the prompt masked out, the prompt's middle cut past `max_length`), so
    both models see identical ids: the policy's
    tokenizer is used for both, which is right for a DPO pair (the reference is the policy's
    starting point, same vocabulary). Both models load lazily on the first `score` call.

    Args:
        model_name_or_path: the DPO-trained policy (hub id or local folder).
        reference_name_or_path: the model it was trained from (its SFT checkpoint).
        beta: scale of the reward. RewardBench uses 1 (the plain log-ratio).
        normalise_by_length: divide by the number of response tokens (RewardBench: no).
        other arguments as for `LikelihoodRM`; `dtype` and `device` apply to both models, so this RM
            needs twice the memory of one model (two 7B models in bfloat16: ~30 GB).
    """

    def __init__(self, model_name_or_path: str, reference_name_or_path: str, beta: float = 1.0,
                 tokenizer_name_or_path: str | None = None, batch_size: int = 4, max_length: int = 1024,
                 device: str = "cpu", dtype: str = "float32", trust_remote_code: bool = False,
                 use_chat_template: bool = True, normalise_by_length: bool = False,
                 allow_pickle_weights: bool = False) -> None:
        super().__init__(model_name_or_path, tokenizer_name_or_path, batch_size, max_length, device, dtype,
                         trust_remote_code, use_chat_template, normalise_by_length, allow_pickle_weights)
        if not float(beta) > 0.0:
            raise LaserConfigError(f"ImplicitDPORM beta={beta} must be > 0 (it scales the log-ratio)")
        self.reference_name_or_path = str(reference_name_or_path)
        self.beta = float(beta)
        self.reference: Any = None

    def check(self) -> None:
        """Fail now if the policy's, the tokenizer's or the reference's local folder is missing."""
        super().check()
        resolve_model_path(self.reference_name_or_path)

    def load(self) -> None:
        """Load the policy and its tokenizer, then the reference, on the same device and dtype."""
        if self.reference is not None:
            return
        super().load()
        from transformers import AutoModelForCausalLM  # deferred: importing transformers costs seconds

        self.reference = load_model(AutoModelForCausalLM, self.reference_name_or_path, self.dtype,
                                    self.device, self.tokenizer.pad_token_id, self.trust_remote_code,
                                    self.allow_pickle_weights)
        sizes = (self.model.config.vocab_size, self.reference.config.vocab_size)
        if sizes[0] != sizes[1]:  # different tokenizers would score different token ids
            raise LaserConfigError(
                f"ImplicitDPORM: policy {self.model_name_or_path!r} has vocabulary size {sizes[0]} but "
                f"reference {self.reference_name_or_path!r} has {sizes[1]}: the reference must share the "
                "policy's tokenizer"
            )

    def to(self, device: str | torch.device) -> ImplicitDPORM:
        """Move both models if loaded; otherwise load them there later."""
        super().to(device)
        if self.reference is not None:
            self.reference.to(device)
        return self

    def score_chunk(self, encoded: list[tuple[list[int], int]]) -> torch.Tensor:
        """beta * (policy - reference) summed (or mean) response log-prob, float32 on the CPU.
        `tokens_processed` counts both forward passes: the reference costs as much as the policy."""
        policy, count = self.response_logprobs(self.model, encoded)
        reference, _ = self.response_logprobs(self.reference, encoded)
        ratio = policy - reference
        if self.normalise_by_length:
            ratio = ratio / count.clamp(min=1)  # clamp: an empty response scores 0, not NaN
        return self.beta * ratio
