"""vLLM's `/classify` API as `laser.rewards.server` speaks it: requests read, answers and errors written.

The shapes follow vLLM's `vllm/entrypoints/pooling/classify/protocol.py` (`ClassificationCompletionRequest`,
`ClassificationChatRequest`, `ClassificationResponse`; vLLM 0.13 to 0.16) and the `ErrorResponse` of
`vllm/entrypoints/openai/protocol.py` (`{"error": {"message", "type", "param", "code"}}`), so that a client
written for `vllm serve <rm> --runner pooling --convert classify` (`VLLMClassifyRM`) reads laser's server
the same way. What laser's server does not do (multimodal input, `truncate_prompt_tokens`) it refuses
with a 400 rather than ignore.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from typing import Any


class ClassifyRequestError(ValueError):
    """A request laser's server refuses: `status`, and the one-line message."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.param = status, param


@dataclass
class ClassifyRequest:
    """What a `/classify` request asks: `model` (None: the server's only RM), and either `texts` or
    `token_ids` (completion form: whole inputs) or `conversation` (chat form: the user's question and the
    assistant's response, which the RM formats itself)."""

    model: str | None
    texts: list[str] | None = None
    token_ids: list[list[int]] | None = None
    conversation: tuple[str, str] | None = None
    add_special_tokens: bool = True
    use_activation: bool = True

    def __len__(self) -> int:
        return len(self.texts or self.token_ids or []) or (1 if self.conversation else 0)


def parse_classify_request(payload: Any) -> ClassifyRequest:
    """A decoded request body as a `ClassifyRequest`; `ClassifyRequestError` (400) when it is malformed."""
    if not isinstance(payload, dict):
        raise ClassifyRequestError(400, "expected a JSON object with \"input\" or \"messages\"")
    if payload.get("truncate_prompt_tokens") is not None:
        raise ClassifyRequestError(400, "truncate_prompt_tokens is not supported by laser's server: the client "
                                        "fits inputs to the RM's max_length", "truncate_prompt_tokens")
    model = payload.get("model")
    activation = payload.get("use_activation")
    use_activation = True if activation is None else bool(activation)  # vLLM's default: the pooler's activation
    if "messages" in payload:
        return ClassifyRequest(model, conversation=_conversation(payload["messages"]),
                               add_special_tokens=bool(payload.get("add_special_tokens", False)),
                               use_activation=use_activation)
    given = payload.get("input")
    special = bool(payload.get("add_special_tokens", True))
    if isinstance(given, str) or (isinstance(given, list) and given and all(isinstance(t, str) for t in given)):
        texts = [given] if isinstance(given, str) else given
        return ClassifyRequest(model, texts=texts, add_special_tokens=special, use_activation=use_activation)
    if isinstance(given, list) and given and all(isinstance(t, int) for t in given):
        return ClassifyRequest(model, token_ids=[given], use_activation=use_activation)
    if isinstance(given, list) and given and all(isinstance(r, list) and all(isinstance(t, int) for t in r)
                                                 for r in given):
        return ClassifyRequest(model, token_ids=given, use_activation=use_activation)
    raise ClassifyRequestError(400, "\"input\" must be a string, a list of strings, or token ids "
                                    "(a list of ints or of lists of ints), and not empty", "input")


def _conversation(messages: Any) -> tuple[str, str]:
    """The last user turn and the last assistant turn of a chat request's messages (text content only)."""
    turns: dict[str, str] = {}
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # OpenAI content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        if isinstance(content, str) and message.get("role") in ("user", "assistant"):
            turns[message["role"]] = content
    if set(turns) != {"user", "assistant"}:
        raise ClassifyRequestError(400, "\"messages\" must hold a user turn (the question) and an assistant turn "
                                        "(the response to score)", "messages")
    return turns["user"], turns["assistant"]


def activated(score: float, use_activation: bool) -> float:
    """What vLLM returns for a one-label classifier: sigmoid(logit) by default, the raw logit with
    `use_activation: false` (what an RM's reward is)."""
    if not use_activation or not math.isfinite(score):
        return score
    return 1.0 / (1.0 + math.exp(-score)) if score >= 0 else math.exp(score) / (1.0 + math.exp(score))


def classify_response(model: str, scores: list[float], prompt_tokens: int, use_activation: bool) -> dict[str, Any]:
    """A `ClassificationResponse`: one `data` item per input, one class each."""
    return {
        "id": f"classify-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()), "model": model,
        "data": [{"index": i, "label": "LABEL_0", "probs": [activated(s, use_activation)], "num_classes": 1}
                 for i, s in enumerate(scores)],
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens, "completion_tokens": 0,
                  "prompt_tokens_details": None},
    }


def models_response(names: list[str]) -> dict[str, Any]:
    """`GET /v1/models`: the served RMs as OpenAI model cards."""
    created = int(time.time())
    return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "laser",
                                        "root": name, "parent": None} for name in names]}


def error_response(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """vLLM's `ErrorResponse`: `{"error": {"message", "type", "param", "code"}}`."""
    kind = {400: "BadRequestError", 404: "NotFoundError", 413: "BadRequestError"}.get(status, "InternalServerError")
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}
