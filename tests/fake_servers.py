"""Small fake servers on 127.0.0.1 that speak the reward-serving APIs laser's remote arms call, with their
request checks, answers and error bodies as upstream writes them (compact JSON, as FastAPI's
`JSONResponse` renders it). Each records the requests it received (`requests`: method, path, headers,
decoded body) and can be told to misbehave (`faults`: a queue of (status, body) answers to give instead,
`delay_s`, `few`: answer one score too few, `nan`: answer NaN). Import with `from fake_servers import ...` (tests/ is on the path, as for conftest).

- `FakeVLLM`: `vllm serve <rm> --runner pooling --convert classify` (the protocol files of vLLM 0.13-0.16):
  `vllm/entrypoints/pooling/classify/protocol.py` (`ClassificationCompletionRequest`,
  `ClassificationChatRequest`, `ClassificationResponse`, `ClassificationData`),
  `vllm/entrypoints/pooling/pooling/protocol.py` (`PoolingResponse`, `PoolingResponseData`),
  `vllm/entrypoints/pooling/base/protocol.py` (the request fields and their defaults: `add_special_tokens`
  true for `input`, false for `messages`; `use_activation` None = the pooler's activation, a sigmoid for a
  one-label classifier), `vllm/entrypoints/openai/protocol.py` (`ErrorResponse`: `{"error": {"message",
  "type", "param", "code"}}`; older vLLM wrote the flat `{"object": "error", "message", "type", "param",
  "code"}`: `error_style="flat"`), `GET /health` (200, empty body) and `GET /v1/models`.
- `FakeOpenRLHF`: `openrlhf/cli/serve_rm.py` (`POST /get_reward` {"query", "prompts"} ->
  {"rewards", "scores", "extra_logs"}; FastAPI's `{"detail": "Method Not Allowed"}` for a GET, plain-text
  "Internal Server Error" for an exception) as `openrlhf/utils/remote_rm_utils.py` calls it (+ "labels").
- `FakeOpenAIChat`: an OpenAI-compatible `/v1/chat/completions` as vLLM serves it
  (`vllm/entrypoints/openai/protocol.py`: `ChatCompletionRequest`, `ChatCompletionResponse`).

Unlike the real servers, each refuses (400) a request field its API does not have, so a misspelt field
fails the tests instead of being ignored.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COMPLETION_FIELDS = {"model", "input", "user", "truncate_prompt_tokens", "request_id", "priority",
                     "add_special_tokens", "use_activation", "mm_processor_kwargs", "cache_salt", "truncation_side"}
CHAT_FIELDS = COMPLETION_FIELDS - {"input"} | {"messages", "add_generation_prompt", "continue_final_message",
                                               "chat_template", "chat_template_kwargs"}
POOLING_EXTRA = {"task", "dimensions", "encoding_format", "embed_dtype", "endianness"}
CHAT_COMPLETION_FIELDS = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n",
                          "seed", "stop", "stream", "user", "logprobs"}


def compact(body: Any) -> bytes:
    """JSON as FastAPI writes it (NaN allowed here, so a fake can send what a careless server would)."""
    return json.dumps(body, separators=(",", ":")).encode()


class FakeServer:
    """A threaded HTTP server on 127.0.0.1 (port 0) dispatching to `handle(method, path, headers, body)`."""

    def __init__(self, token: str | None = None) -> None:
        self.token, self.requests, self.faults = token, [], []
        self.delay_s, self.few, self.nan = 0.0, False, False
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def posts(self, path: str | None = None) -> list[dict]:
        """The decoded bodies of the POSTs received (to `path`)."""
        return [r["body"] for r in self.requests if r["method"] == "POST" and path in (None, r["path"])]

    def shutdown(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def respond(self, method: str, path: str, headers: dict, raw: bytes) -> tuple[int, bytes, str]:
        """Record, apply the faults and the token check, then `handle`."""
        body = json.loads(raw) if raw else None
        with self._lock:
            self.requests.append({"method": method, "path": path, "headers": headers, "body": body})
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            fault = self.faults.pop(0) if self.faults and method == "POST" else None
        try:
            time.sleep(self.delay_s)
            if self.token and headers.get("authorization") != f"Bearer {self.token}":
                return 401, compact(self.error(401, "Unauthorized", "AuthenticationError")), "application/json"
            if fault is not None:
                status, answer = fault
                return status, answer if isinstance(answer, bytes) else compact(answer), "application/json"
            status, answer = self.handle(method, path, body)
            return status, answer if isinstance(answer, bytes) else compact(answer), "application/json"
        finally:
            with self._lock:
                self.in_flight -= 1

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        raise NotImplementedError

    def error(self, status: int, message: str, kind: str = "BadRequestError", param: str | None = None) -> dict:
        return {"error": {"message": message, "type": kind, "param": param, "code": status}}

    def scores_out(self, scores: list[float]) -> list[float]:
        """Apply `few` and `nan`."""
        scores = scores[:-1] if self.few else scores
        return [math.nan for _ in scores] if self.nan else scores


def _handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self._answer("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._answer("POST")

        def _answer(self, method: str) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                status, body, kind = server.respond(method, self.path, headers, raw)
            except BrokenPipeError:
                return
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
                pass

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


class FakeVLLM(FakeServer):
    """vLLM serving `model` with the pooling runner. `score(text_or_ids) -> raw logit` is the model; with
    a `tokenizer`, text inputs are tokenised as vLLM does (`add_special_tokens` as asked) and each input
    whose ids start with two BOS is counted in `double_bos`. Chat requests are rendered with the
    tokenizer's chat template (`add_generation_prompt` false) when it has one, else "user\\nassistant"."""

    def __init__(self, model: str, score: Callable[[Any], float], tokenizer: Any = None, error_style: str = "nested",
                 token: str | None = None, per_token: bool = False) -> None:
        self.model, self.score, self.tokenizer, self.error_style = model, score, tokenizer, error_style
        self.per_token, self.double_bos, self.seen = per_token, 0, []
        super().__init__(token)

    def error(self, status: int, message: str, kind: str = "BadRequestError", param: str | None = None) -> dict:
        if self.error_style == "flat":
            return {"object": "error", "message": message, "type": kind, "param": param, "code": status}
        return super().error(status, message, kind, param)

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "GET" and path == "/health":
            return 200, b""
        if method == "GET" and path == "/v1/models":
            return 200, {"object": "list", "data": [{"id": self.model, "object": "model", "created": int(time.time()),
                                                     "owned_by": "vllm", "root": self.model, "parent": None,
                                                     "max_model_len": 4096, "permission": []}]}
        if method != "POST" or path not in ("/classify", "/pooling"):
            return 404, {"detail": "Not Found"}
        allowed = (CHAT_FIELDS if "messages" in body else COMPLETION_FIELDS) | (POOLING_EXTRA if path == "/pooling"
                                                                                 else set())
        extra = sorted(set(body) - allowed)
        if extra:
            return 400, self.error(400, f"Unknown fields {extra}", param=extra[0])
        if body.get("model") not in (None, self.model):
            return 404, self.error(404, f"The model `{body['model']}` does not exist.", "NotFoundError", "model")
        inputs = self.inputs(body)
        raw = self.scores_out([self.score(item) for item in inputs])
        activation = body.get("use_activation") is not False
        values = [sigmoid(s) if activation and math.isfinite(s) else s for s in raw]
        tokens = sum(len(i) if isinstance(i, list) else len(str(i).split()) for i in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0, "prompt_tokens_details": None}
        if path == "/classify":
            data = [{"index": i, "label": "LABEL_0", "probs": [v], "num_classes": 1} for i, v in enumerate(values)]
            return 200, {"id": f"classify-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()),
                         "model": self.model, "data": data, "usage": usage}
        data = [{"index": i, "object": "pooling", "data": [[0.0], [v]] if self.per_token else [v]}
                for i, v in enumerate(values)]
        return 200, {"id": f"pool-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()),
                     "model": self.model, "data": data, "usage": usage}

    def inputs(self, body: dict) -> list[Any]:
        """What the model reads per input: ids (with a tokenizer, or given as ids) or the text."""
        if "messages" in body:
            special = body.get("add_special_tokens", False)
            texts = [self.render(body["messages"])]
        else:
            special = body.get("add_special_tokens", True)
            given = body["input"]
            texts = [given] if isinstance(given, str) or (given and isinstance(given[0], int)) else given
        self.seen += texts
        if self.tokenizer is None:
            return texts
        rows = [t if isinstance(t, list) else self.tokenizer(t, add_special_tokens=special)["input_ids"]
                for t in texts]
        bos = self.tokenizer.bos_token_id
        self.double_bos += sum(len(r) > 1 and r[0] == r[1] == bos for r in rows)
        return rows

    def render(self, messages: list[dict]) -> str:
        if self.tokenizer is not None and getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        return "\n".join(m["content"] for m in messages)


class FakeOpenRLHF(FakeServer):
    """OpenRLHF's `serve_rm.py`: POST /get_reward scores each query with `reward(query, prompt, label)`."""

    def __init__(self, reward: Callable[[str, str, str], float | None], token: str | None = None) -> None:
        self.reward = reward
        super().__init__(token)

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if path != "/get_reward":
            return 404, {"detail": "Not Found"}
        if method != "POST":
            return 405, {"detail": "Method Not Allowed"}
        queries, prompts = body.get("query"), body.get("prompts")
        labels = body.get("labels") or [None] * len(queries)
        rewards = self.scores_out([self.reward(q, p, lab) for q, p, lab in zip(queries, prompts, labels, strict=True)])
        return 200, {"rewards": rewards, "scores": rewards, "extra_logs": {"dummy_scores": rewards}}


class FakeOpenAIChat(FakeServer):
    """An OpenAI-compatible chat server (vLLM's shapes) whose model writes `reply(messages)`."""

    def __init__(self, model: str, reply: Callable[[list[dict]], str], token: str | None = None) -> None:
        self.model, self.reply = model, reply
        super().__init__(token)

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "GET" and path == "/v1/models":
            return 200, {"object": "list", "data": [{"id": self.model, "object": "model", "created": 0,
                                                     "owned_by": "vllm", "root": self.model, "parent": None}]}
        if method != "POST" or path != "/v1/chat/completions":
            return 404, {"detail": "Not Found"}
        extra = sorted(set(body) - CHAT_COMPLETION_FIELDS)
        if extra:
            return 400, self.error(400, f"Unknown fields {extra}", param=extra[0])
        if body.get("model") != self.model:
            return 404, self.error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError", "model")
        content = self.reply(body["messages"])
        prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
        completion_tokens = len(content.split())
        message = {"role": "assistant", "content": content, "refusal": None, "annotations": None, "audio": None,
                   "function_call": None, "tool_calls": [], "reasoning_content": None}
        return 200, {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                     "model": self.model, "choices": [{"index": 0, "message": message, "logprobs": None,
                                                       "finish_reason": "stop", "stop_reason": None}],
                     "service_tier": None, "system_fingerprint": None,
                     "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + completion_tokens,
                               "completion_tokens": completion_tokens, "prompt_tokens_details": None},
                     "prompt_logprobs": None, "kv_transfer_params": None}


class BrokenServer(FakeServer):
    """A server that is up (answers /health, lists `models` at /v1/models, 405 for a GET elsewhere) but
    fails every POST with vLLM's 500 error body: what a remote arm meets when its RM crashes mid-run."""

    def __init__(self, models: list[str]) -> None:
        self.models = models
        super().__init__()

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "GET" and path == "/health":
            return 200, b""
        if method == "GET" and path == "/v1/models":
            return 200, {"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]}
        if method == "GET":
            return 405, {"detail": "Method Not Allowed"}
        return 500, self.error(500, "EngineCore encountered an issue", "InternalServerError")
