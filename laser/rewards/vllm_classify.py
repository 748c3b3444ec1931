"""An RM served by vLLM's pooling runner: `POST /classify` (or `/pooling`), many responses per request.

    vllm serve Skywork/Skywork-Reward-Llama-3.1-8B-v0.2 --runner pooling --convert classify --port 8000
    python -m laser.run rm_pool=vllm_classify rm_pool.models.skywork.url=http://<host>:8000

The request follows vLLM's `ClassificationCompletionRequest` (`vllm/entrypoints/pooling/classify/protocol.py`,
vLLM 0.13 to 0.16): `{"model", "input": [...], "use_activation": false, "add_special_tokens": ...}`, and
the reward of input i is `data[i].probs[score_index]` of the `ClassificationResponse`.

- The RM's chat template is applied here, with the RM's tokenizer (`tokenizer_name_or_path`, local or
  hub), exactly as `ClassifierRM` applies it in process (`laser.rewards.rm_inputs.encode_pair`): the
  raw question and the response as a user and an assistant turn, sent with `add_special_tokens: false`
  (the template wrote BOS; vLLM adding its own would double it). A prompt over `max_length` tokens
  loses its middle here, never the response. `input_format: token_ids` sends the very ids instead of
  the text (exact even where a cut text would tokenise differently on the server).
- `use_activation: false`: vLLM applies a sigmoid to a one-label classifier by default; the raw logit
  is the reward (a sigmoid squashes the margins DPO pairs are built from).
- Without a local tokenizer (`tokenizer_name_or_path: null`), each response is sent in vLLM's chat form
  (`ClassificationChatRequest`: `"messages"`, one conversation per request, `max_in_flight` at once)
  and vLLM applies the template of the model it serves.
- `route: pooling` is for reward-modelling heads (`*ForRewardModeling`) that vLLM maps to `embed`: the
  reward is `data[i].data[score_index]` (the last token's row when vLLM returns one row per token).

Cost per call: one HTTP request per `batch_size` responses (or one per response in the chat form), plus
the local tokenisation (~1 ms per response); the server's forward pass is the RM's cost.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from laser.errors import LaserConfigError
from laser.hf import load_tokenizer
from laser.rewards.base import RewardModel, ScoringBatch
from laser.rewards.errors import RewardOutputError
from laser.rewards.http_client import HTTPEndpoint, RemoteArm, RemoteRMError
from laser.rewards.rm_inputs import encode_pair, fit_to_length, full_text

log = logging.getLogger(__name__)
ROUTES = ("classify", "pooling")
INPUT_FORMATS = ("text", "token_ids")


class VLLMClassifyRM(RemoteArm, RewardModel):
    """Scores (question, response) with a sequence-classification RM behind vLLM (or laser's own server).

    Args:
        url: the vLLM server, e.g. "http://10.0.0.5:8000".
        model: the served model's name (`vllm serve <model>`, or `--served-model-name`).
        tokenizer_name_or_path: the RM's tokenizer, to apply its chat template here (null: vLLM's chat form).
        route: "classify" (`*ForSequenceClassification` RMs) or "pooling" (reward heads mapped to `embed`).
        use_chat_template: chat-format the raw question and the response when the tokenizer has a
            template (what chat RMs were trained on); else score the policy's prompt + response.
        input_format: "text" (readable in vLLM's logs) or "token_ids" (the ids themselves).
        max_length: tokens kept per (prompt, response) with a local tokenizer; the prompt's middle goes first.
        score_index: which output is the reward (0 for one-label RMs).
        pooling_task: `task` of a `/pooling` request (e.g. "embed"; null: vLLM's default for the model).
        truncate_prompt_tokens: passed to vLLM (null: not sent; vLLM refuses inputs over its max_model_len).
        batch_size: responses per request (text form); larger: fewer round trips, longer retries.
        max_in_flight, timeout_s, retries, backoff_s, token_env: as for `HTTPEndpoint`.
        trust_remote_code: allow the tokenizer's own code.
    """

    health_path = "/v1/models"

    def __init__(self, url: str, model: str, tokenizer_name_or_path: str | None = None, route: str = "classify",
                 use_chat_template: bool = True, input_format: str = "text", max_length: int = 4096,
                 score_index: int = 0, pooling_task: str | None = None, truncate_prompt_tokens: int | None = None,
                 batch_size: int = 64, max_in_flight: int = 4, timeout_s: float = 60.0, retries: int = 3,
                 backoff_s: float = 0.5, token_env: str | None = None, trust_remote_code: bool = False) -> None:
        super().__init__()
        if route not in ROUTES or input_format not in INPUT_FORMATS:
            raise LaserConfigError(f"VLLMClassifyRM route={route!r} / input_format={input_format!r}: choose route "
                                   f"from {list(ROUTES)} and input_format from {list(INPUT_FORMATS)}")
        if int(batch_size) < 1 or int(max_length) < 1 or int(score_index) < 0:
            raise LaserConfigError(f"VLLMClassifyRM needs batch_size >= 1, max_length >= 1, score_index >= 0; got "
                                   f"{batch_size}, {max_length}, {score_index}")
        self.endpoint = HTTPEndpoint(url, token_env, timeout_s, retries, backoff_s, max_in_flight)
        self.model, self.route, self.input_format = str(model), route, input_format
        self.tokenizer_name_or_path = str(tokenizer_name_or_path) if tokenizer_name_or_path else None
        self.use_chat_template, self.trust_remote_code = bool(use_chat_template), bool(trust_remote_code)
        self.max_length, self.score_index, self.batch_size = int(max_length), int(score_index), int(batch_size)
        self.pooling_task, self.truncate_prompt_tokens = pooling_task, truncate_prompt_tokens
        self.tokenizer: Any = None
        self.tokens_processed = 0
        self.responses_cut = 0  # responses longer than max_length by themselves, cut to their start
        self._warned = False

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        """One float32 score per response; one request per `batch_size` (or per response: chat form)."""
        if self.tokenizer_name_or_path is None:
            payloads = [self._options({"messages": [{"role": "user", "content": question},
                                                    {"role": "assistant", "content": response}]})
                        for question, response in zip(batch.rm_prompts(), batch.responses, strict=True)]
            sizes = [1] * len(payloads)
        else:
            inputs, special = self.formatted_inputs(batch)
            starts = range(0, len(inputs), self.batch_size)
            payloads = [self._options({"input": inputs[i:i + self.batch_size], "add_special_tokens": special})
                        for i in starts]
            sizes = [len(p["input"]) for p in payloads]
        scores: list[float] = []
        for size, answer in zip(sizes, self.endpoint.post_many(f"/{self.route}", payloads), strict=True):
            scores += self.read_scores(answer, size)
        return torch.tensor(scores, dtype=torch.float32)

    def formatted_inputs(self, batch: ScoringBatch) -> tuple[list[Any], bool]:
        """What the model reads, per response (text or ids, cut to `max_length`), and the request's
        `add_special_tokens`: false when chat formatted (the template wrote BOS), else true."""
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(self.tokenizer_name_or_path, self.trust_remote_code)
        chat = self.use_chat_template and bool(getattr(self.tokenizer, "chat_template", None))
        if self.use_chat_template and not chat and not self._warned:
            self._warned = True
            log.warning("RM %s: tokenizer %r has no chat template; it scores the policy's prompt + response",
                        self.name, self.tokenizer_name_or_path)
        prompts = batch.rm_prompts() if chat else batch.prompts
        inputs = []
        for prompt, response in zip(prompts, batch.responses, strict=True):
            ids, n_prompt = encode_pair(self.tokenizer, prompt, response, chat)
            fitted, _, cut = fit_to_length(ids, n_prompt, self.max_length)
            self.responses_cut += int(cut)
            if self.input_format == "token_ids":
                inputs.append(fitted)
            elif len(fitted) == len(ids):  # nothing cut: the text itself
                inputs.append(full_text(self.tokenizer, prompt, response, chat))
            else:  # cut: the kept ids as text (without BOS when not chat: the server adds it back)
                inputs.append(self.tokenizer.decode(fitted, skip_special_tokens=not chat))
        return inputs, (not chat) and self.input_format == "text"

    def _options(self, payload: dict[str, Any]) -> dict[str, Any]:
        """`payload` with the model, the raw output asked for, and the knobs that are set."""
        options: dict[str, Any] = {"model": self.model, **payload, "use_activation": False}
        options.setdefault("add_special_tokens", False)
        if self.truncate_prompt_tokens is not None:
            options["truncate_prompt_tokens"] = int(self.truncate_prompt_tokens)
        if self.route == "pooling" and self.pooling_task:
            options["task"] = self.pooling_task
        return options

    def read_scores(self, answer: Any, expected: int) -> list[float]:
        """The rewards in a `ClassificationResponse` / `PoolingResponse`, in input order; a count that is
        not `expected` is a wrong_count fault, a missing field a RemoteRMError."""
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list):
            raise RemoteRMError(f"{self.endpoint.url}/{self.route} answered without a \"data\" list")
        if len(data) != expected:
            raise RewardOutputError(self.name, f"at {self.endpoint.url}/{self.route} returned {len(data)} "
                                               f"score(s) for {expected} input(s)")
        usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
        self.tokens_processed += int(usage.get("prompt_tokens") or 0)
        items = sorted(data, key=lambda item: item.get("index", 0) if isinstance(item, dict) else 0)
        return [self._value(item) for item in items]

    def _value(self, item: Any) -> float:
        field = "probs" if self.route == "classify" else "data"
        values = item.get(field) if isinstance(item, dict) else None
        if isinstance(values, list) and values and isinstance(values[-1], list):  # one row per token: the last
            values = values[-1]
        if not isinstance(values, list) or len(values) <= self.score_index:
            raise RemoteRMError(f"{self.endpoint.url}/{self.route} answered an item without {field}"
                                f"[{self.score_index}]: {str(item)[:120]}")
        value = values[self.score_index]
        return math.nan if value is None else float(value)
