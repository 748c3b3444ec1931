"""What the bandit sees: one context vector per prompt (`bandit.context=`), optionally projected.

- `last_token` (paper): the policy's last-layer hidden state at the last prompt token.
- `mean_embedding` (the authors' code): the mean of the policy's input embeddings over the prompt.
- `sentence_encoder`: a frozen encoder (e.g. all-MiniLM-L6-v2 from a local folder), mean-pooled; it
  does not change as the policy trains, so the bandit's regression target is stationary in context.

Every vector is unit-normalised (so LinUCB's alpha means the same at any hidden size). With
`context_dim`, a fixed seeded Gaussian projection maps it to `context_dim` dimensions first:
LinUCB's cost is O(K d^2) per step, so d=4096 -> 64 makes the bandit ~4000x cheaper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from laser.errors import LaserConfigError

KINDS = ("last_token", "mean_embedding", "sentence_encoder")


class ContextEncoder:
    """Maps a batch of prompts (already tokenised for the policy) to contexts [B, d]."""

    def __init__(self, kind: str = "last_token", context_encoder: str | None = None,
                 context_dim: int | None = None, seed: int = 0) -> None:
        if kind not in KINDS:
            raise LaserConfigError(f"bandit.context={kind!r}; choose one of {list(KINDS)}")
        if kind == "sentence_encoder" and not context_encoder:
            raise LaserConfigError("bandit.context=sentence_encoder needs bandit.context_encoder=<folder or hub id>")
        if context_dim is not None and (not isinstance(context_dim, int) or context_dim < 1):
            raise LaserConfigError(f"bandit.context_dim={context_dim!r} must be null or an integer >= 1")
        self.kind, self.encoder_path, self.dim, self.seed = kind, context_encoder, context_dim, seed
        self._encoder = None
        self._projection: torch.Tensor | None = None

    @torch.no_grad()
    def __call__(self, policy, encoded: dict[str, torch.Tensor], prompts: list[str]) -> torch.Tensor:
        if self.kind == "last_token":
            vectors = policy.embed(encoded)
        elif self.kind == "mean_embedding":
            embeddings = policy.model.get_input_embeddings()(encoded["input_ids"]).float()
            mask = encoded["attention_mask"].unsqueeze(-1).float()
            vectors = (embeddings * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        else:
            vectors = self._sentence_vectors(prompts)
        vectors = vectors.float().cpu()
        if self.dim is not None:
            vectors = vectors @ self._projection_for(vectors.shape[1])
        return F.normalize(vectors, dim=-1)

    def _projection_for(self, width: int) -> torch.Tensor:
        if self._projection is None or self._projection.shape[0] != width:
            generator = torch.Generator().manual_seed(self.seed)  # private: the run's RNG is untouched
            self._projection = torch.randn(width, self.dim, generator=generator) / self.dim**0.5
        return self._projection

    def _sentence_vectors(self, prompts: list[str]) -> torch.Tensor:
        from transformers import AutoModel

        from laser.hf import load_model, load_tokenizer

        if self._encoder is None:
            tokenizer = load_tokenizer(self.encoder_path)
            model = load_model(AutoModel, self.encoder_path, "float32", "cpu", tokenizer.pad_token_id)
            self._encoder = (tokenizer, model)
        tokenizer, model = self._encoder
        batch = tokenizer(prompts, return_tensors="pt", padding=True, truncation=True, max_length=256)
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
