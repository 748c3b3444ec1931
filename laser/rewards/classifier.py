"""A Hugging Face sequence-classification RM (Skywork-Reward, ArmoRM style): one logit per response."""

from __future__ import annotations

import torch

from laser.hf import chat_text
from laser.rewards.base import ScoringBatch
from laser.rewards.hf_base import LazyHFRewardModel


class ClassifierRM(LazyHFRewardModel):
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

    auto_class = "AutoModelForSequenceClassification"

    def __init__(self, model_name_or_path: str, tokenizer_name_or_path: str | None = None, batch_size: int = 8,
                 max_length: int = 1024, device: str = "cpu", dtype: str = "float32",
                 trust_remote_code: bool = False, use_chat_template: bool = True, score_index: int = 0,
                 allow_pickle_weights: bool = False) -> None:
        super().__init__(model_name_or_path, tokenizer_name_or_path, batch_size, max_length, device, dtype,
                         trust_remote_code, use_chat_template)
        self.score_index = int(score_index)
        self.allow_pickle_weights = bool(allow_pickle_weights)  # trust pickled .bin weights of this RM

    def prepare(self, batch: ScoringBatch) -> list[str]:
        """The text each response is scored as (chat-formatted when possible)."""
        texts = []
        for prompt, response in zip(batch.prompts, batch.responses, strict=True):
            formatted = chat_text(self.tokenizer, prompt, response, self.use_chat_template)
            texts.append(prompt + response if formatted is None else formatted)
        return texts

    def score_chunk(self, texts: list[str]) -> torch.Tensor:
        """`logits[:, score_index]` at each text's last token, float32 on the CPU."""
        self.tokenizer.padding_side = "right"  # the classifier reads the last non-pad token
        encoded = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            add_special_tokens=not self.chat_formatted,
            return_tensors="pt",
        )
        logits = self.forward(self.model, encoded["input_ids"], encoded["attention_mask"]).logits
        return logits[:, self.score_index].float().cpu()


def untrained_classifier_rm(cache_dir: str, seed: int = 0, batch_size: int = 64) -> ClassifierRM:
    """The embedded pool's uninformative neural RM: a randomly initialised Llama classifier built locally
    (`laser.tiny.build_untrained_classifier`), scored like any hub RM."""
    from laser.tiny import build_untrained_classifier

    path = build_untrained_classifier(cache_dir, seed=seed)
    return ClassifierRM(path, batch_size=batch_size, max_length=256, use_chat_template=False)
