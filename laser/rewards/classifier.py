"""A Hugging Face sequence-classification RM (Skywork-Reward, ArmoRM style): one logit per response."""

from __future__ import annotations

import torch

from laser.errors import LaserConfigError
from laser.rewards.base import ScoringBatch
from laser.rewards.hf_base import LazyHFRewardModel
from laser.rewards.rm_inputs import Encoded, encode_pair, free_pad_id, pad_right


class ClassifierRM(LazyHFRewardModel):
    """Scores (prompt, response) with `AutoModelForSequenceClassification`: the score is
    `logits[:, score_index]` at the last token.

    Nothing loads until the first `score` call (hub id or local folder), so listing this RM in a
    pool is free until the bandit picks it. What it reads is `LazyHFRewardModel`'s rule: a chat RM
    (Skywork-Reward, FsfairX, GRM) gets the raw question and the response in its own chat template,
    tokenised as the whole conversation (as such RMs are trained); the prompt's middle is cut past
    `max_length`, never the response. Rows are right padded with an id none of them holds, so the
    classifier reads each row's last token even when the response ends in eos = pad.

    Args:
        model_name_or_path: hub id or local folder with config.json and weights.
        tokenizer_name_or_path: defaults to `model_name_or_path`.
        batch_size: responses per forward pass; higher is faster and uses more memory.
        max_length: tokens kept per (prompt, response); the prompt's middle goes first.
        device, dtype: where and in which precision the model runs ("bfloat16" halves memory).
        trust_remote_code: allow the checkpoint's own model code (ArmoRM needs it).
        use_chat_template: format the raw question and the response as a user/assistant conversation
            when the tokenizer has a chat template (what chat RMs were trained on); otherwise score
            the policy's `prompt + response` as plain text.
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

    def encode(self, prompt: str, response: str) -> Encoded:
        """Token ids of the whole text the RM reads (chat-formatted when possible) and how many
        leading ids are the prompt's, before any truncation."""
        return encode_pair(self.tokenizer, prompt, response, self.chat_formatted)

    def prepare(self, batch: ScoringBatch) -> list[Encoded]:
        """Each response's (token ids, prompt length), cut to `max_length` without cutting the response."""
        pairs = zip(self.prompt_texts(batch), batch.responses, strict=True)
        return [self.fit(self.encode(prompt, response)) for prompt, response in pairs]

    def score_chunk(self, encoded: list[Encoded]) -> torch.Tensor:
        """`logits[:, score_index]` at each row's last token, float32 on the CPU."""
        rows = [ids for ids, _ in encoded]
        # HF classifiers find each row's last token through the (text) config's pad id: make it one
        # that no row holds, so a response ending in eos (= pad for many RMs) is read at that eos.
        configs = {id(c): c for c in (self.model.config, self.model.config.get_text_config())}.values()
        vocab = self.model.get_input_embeddings().num_embeddings
        pad = free_pad_id(rows, self.model.config.get_text_config().pad_token_id, vocab)
        for config in configs:
            config.pad_token_id = pad
        input_ids, attention = pad_right(rows, pad)
        logits = self.forward(self.model, input_ids, attention).logits
        return logits[:, self.score_index].float().cpu()


    @torch.no_grad()
    def score_texts(self, texts: list[str], add_special_tokens: bool) -> torch.Tensor:
        """Scores of whole texts, already formatted (a vLLM `/classify` request's `input`, served by
        `laser.rewards.server`): tokenised as given, `add_special_tokens` as the request says, each row's
        `logits[:, score_index]` at its last token. A text over `max_length` tokens is refused (as vLLM
        refuses one over its max_model_len): cutting it here would cut what the client chose to send."""
        self.load()
        rows = [list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]) for text in texts]
        return self.score_ids(rows)

    @torch.no_grad()
    def score_ids(self, rows: list[list[int]]) -> torch.Tensor:
        """Scores of token id rows (a `/classify` request's pre-tokenised `input`), as `score_texts`."""
        self.load()
        lengths = [len(row) for row in rows]
        if lengths and (max(lengths) > self.max_length or min(lengths) == 0):
            raise LaserConfigError(f"RM {self.name!r} scores 1 to max_length={self.max_length} tokens per input; "
                                   f"got inputs of {min(lengths)} to {max(lengths)} tokens")
        scores = [self.score_chunk([(row, 0) for row in chunk]) for chunk in self.batches(rows)]
        return torch.cat(scores) if scores else torch.zeros(0)

def untrained_classifier_rm(cache_dir: str, seed: int = 0, batch_size: int = 64) -> ClassifierRM:
    """The embedded pool's uninformative neural RM: a randomly initialised Llama classifier built locally
    (`laser.tiny.build_untrained_classifier`), scored like any hub RM."""
    from laser.tiny import build_untrained_classifier

    path = build_untrained_classifier(cache_dir, seed=seed)
    return ClassifierRM(path, batch_size=batch_size, max_length=256, use_chat_template=False)
