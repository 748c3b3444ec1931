"""Lazily loaded Hugging Face models: what the HF reward models and the pairwise LM judge share.

A pool may list several 7B RMs, so nothing loads until a model is first used (the bandit picks the RM,
or the judge is asked). This module holds the options every such model takes, the cheap path check,
the load itself, device moves and the `batch_size` loop; each adapter keeps only its scoring maths.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any, TypeVar

import torch

from laser.hf import load_model, load_tokenizer, resolve_dtype, resolve_model_path
from laser.rewards.base import RewardModel, ScoringBatch
from laser.rewards.rm_inputs import Encoded, fit_to_length

log = logging.getLogger(__name__)
T = TypeVar("T")
_Self = TypeVar("_Self", bound="LazyHFModel")


class LazyHFModel:
    """A tokenizer and a `transformers` model (class `auto_class`) from a hub id or local folder,
    loaded on the first `load()` call.

    Args:
        model_name_or_path: hub id or local folder with config.json and weights.
        tokenizer_name_or_path: defaults to `model_name_or_path`.
        batch_size: items per forward pass; higher is faster and uses more memory.
        max_length: tokens kept per item.
        device, dtype: where and in which precision the model runs ("bfloat16" halves memory).
        trust_remote_code: allow the checkpoint's own model code (ArmoRM needs it).
        use_chat_template: format text as a chat when the tokenizer has a chat template.
    """

    auto_class: str  # the `transformers` Auto class `load` builds, e.g. "AutoModelForCausalLM"
    tokens_processed: int = 0  # non-pad input tokens of every `forward` so far (compute accounting)

    def __init__(
        self,
        model_name_or_path: str,
        tokenizer_name_or_path: str | None,
        batch_size: int,
        max_length: int,
        device: str,
        dtype: str,
        trust_remote_code: bool,
        use_chat_template: bool,
    ) -> None:
        super().__init__()  # cooperative: `RewardModel` (name) or `Judge` comes next in the MRO
        resolve_dtype(dtype)  # fail on a typo now, not after the first bandit pick
        self.model_name_or_path = str(model_name_or_path)
        self.tokenizer_name_or_path = str(tokenizer_name_or_path or model_name_or_path)
        self.batch_size = int(batch_size)
        self.max_length = int(max_length)
        self.device = str(device)
        self.dtype = str(dtype)
        self.trust_remote_code = bool(trust_remote_code)
        self.use_chat_template = bool(use_chat_template)
        self.model: Any = None
        self.tokenizer: Any = None
        self.allow_pickle_weights = False  # pickled .bin weights can run code: refused unless a subclass allows

    def check(self) -> None:
        """Fail now if a local model or tokenizer folder is missing (cheap; a hub id is checked on load)."""
        resolve_model_path(self.model_name_or_path)
        resolve_model_path(self.tokenizer_name_or_path)

    def load(self) -> None:
        """Load the tokenizer and model now (otherwise the first use does it)."""
        if self.model is not None:
            return
        import transformers  # deferred: importing transformers costs seconds

        self.tokenizer = load_tokenizer(self.tokenizer_name_or_path, self.trust_remote_code)
        self.model = load_model(
            getattr(transformers, self.auto_class),
            self.model_name_or_path,
            self.dtype,
            self.device,
            self.tokenizer.pad_token_id,
            self.trust_remote_code,
            self.allow_pickle_weights,
        )

    def to(self: _Self, device: str | torch.device) -> _Self:
        """Move the model if loaded; otherwise load it there later."""
        self.device = str(device)
        if self.model is not None:
            self.model.to(device)
        return self

    def forward(self, model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        """`model(input_ids, attention_mask)` on the model's device, counting the non-pad tokens in
        `tokens_processed` (padding costs compute too, but depends on batching, not on the work asked).
        `model` is `self.model` or a second network the adapter holds (a DPO reference)."""
        self.tokens_processed += int(attention_mask.sum())
        device = model.device
        return model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device))

    @property
    def chat_formatted(self) -> bool:
        """Whether texts are chat-formatted (after loading). A chat template writes the special tokens
        (BOS) into the text itself, so they must not be added again when tokenising."""
        return bool(self.use_chat_template and getattr(self.tokenizer, "chat_template", None))

    def batches(self, items: list[T]) -> Iterator[list[T]]:
        """`items` in consecutive chunks of at most `batch_size`, one forward pass each."""
        for start in range(0, len(items), self.batch_size):
            yield items[start : start + self.batch_size]


class LazyHFRewardModel(LazyHFModel, RewardModel):
    """An HF RM: `prepare` turns a batch into per-response inputs, `score_chunk` scores up to
    `batch_size` of them. Loads on the first `score` call, so listing it in a pool is free until the
    bandit picks it.

    What the RM reads (`prompt_texts`), so that it sees what its authors trained it on:
    - chat formatted (`use_chat_template` and the RM's tokenizer has a template): the task's question
      as a person would ask it (`Task.rm_prompt`: no "### Instruction:", no answer-format scaffolding)
      as the user turn and the response as the assistant turn, in the RM's own template, tokenised
      without added special tokens (the template writes BOS itself, as `apply_chat_template` does).
    - otherwise (use_chat_template false, or a tokenizer without a template: warned once): the prompt
      the policy was given, then the response, as one plain text with the tokenizer's special tokens.
      This is what the LASeR authors' likelihood RMs read, and what RMs trained here on the task's
      format (learned judges) were trained on.
    Sequences over `max_length` lose the middle of the prompt, never the response
    (`laser.rewards.rm_inputs.fit_to_length`); a response longer than `max_length` by itself keeps its
    first `max_length` tokens, counted in `responses_cut` and warned once.
    """

    responses_cut: int = 0  # responses longer than max_length by themselves, cut (see `fit`)
    _warned: frozenset[str] = frozenset()

    def prompt_texts(self, batch: ScoringBatch) -> list[str]:
        """The prompt each response is scored against: the raw question when chat formatted, else the
        policy's prompt (see the class docstring). Called after loading."""
        if self.chat_formatted:
            return batch.rm_prompts()
        if self.use_chat_template:
            self._warn_once("template", "RM %s: tokenizer %r has no chat template; it scores the policy's "
                            "prompt + response as plain text", self.name, self.tokenizer_name_or_path)
        return batch.prompts

    def fit(self, encoded: Encoded) -> Encoded:
        """(ids, prompt length) cut to `max_length` without cutting the response (`fit_to_length`)."""
        ids, n_prompt, cut = fit_to_length(*encoded, self.max_length)
        if cut:
            self.responses_cut += 1
            self._warn_once("cut", "RM %s: a response of more than max_length=%d tokens was cut to its first "
                            "%d tokens (raise max_length above the longest response)", self.name,
                            self.max_length, self.max_length)
        return ids, n_prompt

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned = self._warned | {key}
            log.warning(message, *args)

    @abstractmethod
    def prepare(self, batch: ScoringBatch) -> list[Any]:
        """One model input per response (text or token ids); called after loading."""

    @abstractmethod
    def score_chunk(self, inputs: list[Any]) -> torch.Tensor:
        """Float32 CPU scores for at most `batch_size` prepared inputs."""

    @torch.no_grad()
    def score(self, batch: ScoringBatch) -> torch.Tensor:
        """One score per response, float32 on the CPU."""
        self.load()
        scores = [self.score_chunk(chunk) for chunk in self.batches(self.prepare(batch))]
        return torch.cat(scores) if scores else torch.zeros(0)
