"""A Hugging Face sequence-classification RM (Skywork-Reward, ArmoRM style): one logit per response."""

from __future__ import annotations

from typing import Any

import torch

from laser.hf import chat_text, load_model, load_tokenizer, resolve_dtype, resolve_model_path
from laser.rewards.base import RewardModel, ScoringBatch


class ClassifierRM(RewardModel):
    """Scores (prompt, response) with `AutoModelForSequenceClassification`: the score is
    `logits[:, score_index]` at the last token.

    Nothing loads until the first `score` call (hub id or local folder), so listing this RM in a
    pool is free until the bandit picks it.

    Args:
        model_name_or_path: hub id or local folder with config.json and weights.
        tokenizer_name_or_path: defaults to `model_name_or_path`.
        batch_size: responses per forward pass; higher is faster and uses more memory.
        max_length: tokens kept per (prompt, response), truncated on the right.
        device, dtype: where and in which precision the model runs ("bfloat16" halves memory).
        trust_remote_code: allow the checkpoint's own model code (ArmoRM needs it).
        use_chat_template: format a user/assistant conversation when the tokenizer has a chat
            template (what chat RMs were trained on); otherwise score `prompt + response`.
        score_index: which output logit is the reward (0 for single-head RMs).
    """

    def __init__(
        self,
        model_name_or_path: str,
        tokenizer_name_or_path: str | None = None,
        batch_size: int = 8,
        max_length: int = 1024,
        device: str = "cpu",
        dtype: str = "float32",
        trust_remote_code: bool = False,
        use_chat_template: bool = True,
        score_index: int = 0,
    ) -> None:
        super().__init__()
        resolve_dtype(dtype)  # fail on a typo now, not after the first bandit pick
        self.model_name_or_path = str(model_name_or_path)
        self.tokenizer_name_or_path = str(tokenizer_name_or_path or model_name_or_path)
        self.batch_size = int(batch_size)
        self.max_length = int(max_length)
        self.device = str(device)
        self.dtype = str(dtype)
        self.trust_remote_code = bool(trust_remote_code)
        self.use_chat_template = bool(use_chat_template)
        self.score_index = int(score_index)
        self.model: Any = None
        self.tokenizer: Any = None

    def check(self) -> None:
        """Fail now if a local model or tokenizer folder is missing (cheap; a hub id is checked on load)."""
        resolve_model_path(self.model_name_or_path)
        resolve_model_path(self.tokenizer_name_or_path)

    def load(self) -> None:
        """Load the tokenizer and model now (otherwise the first `score` call does it)."""
        if self.model is not None:
            return
        from transformers import AutoModelForSequenceClassification

        self.tokenizer = load_tokenizer(self.tokenizer_name_or_path, self.trust_remote_code)
        self.model = load_model(
            AutoModelForSequenceClassification,
            self.model_name_or_path,
            self.dtype,
            self.device,
            self.tokenizer.pad_token_id,
            self.trust_remote_code,
        )

    def to(self, device: str | torch.device) -> ClassifierRM:
        """Move the model if loaded; otherwise load it there later."""
        self.device = str(device)
        if self.model is not None:
            self.model.to(device)
        return self

    def texts(self, batch: ScoringBatch) -> list[str]:
        """The text each response is scored as (chat-formatted when possible)."""
        texts = []
        for prompt, response in zip(batch.prompts, batch.responses, strict=True):
            formatted = chat_text(self.tokenizer, prompt, response, self.use_chat_template)
            texts.append(prompt + response if formatted is None else formatted)
        return texts

    @torch.no_grad()
    def score(self, batch: ScoringBatch) -> torch.Tensor:
        """`logits[:, score_index]` per response, float32 on the CPU."""
        self.load()
        texts = self.texts(batch)
        # A chat template already writes the special tokens (BOS) into the text.
        add_special = not (self.use_chat_template and getattr(self.tokenizer, "chat_template", None))
        self.tokenizer.padding_side = "right"  # the classifier reads the last non-pad token
        scores = []
        for start in range(0, len(texts), self.batch_size):
            encoded = self.tokenizer(
                texts[start : start + self.batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                add_special_tokens=add_special,
                return_tensors="pt",
            ).to(self.model.device)
            logits = self.model(
                input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]
            ).logits
            scores.append(logits[:, self.score_index].float().cpu())
        return torch.cat(scores) if scores else torch.zeros(0)
