"""The HTTP server for a pool's RMs: any text-only RM, scored one request at a time, in two shapes.

    python -m laser.rewards.server --pool tiny_with_classifier --port 8000    # rm_pool name or yaml path

- vLLM's `/classify` (`laser.rewards.classify_api`; `GET /v1/models` lists the RMs): `VLLMClassifyRM`
  reads laser's server and `vllm serve <rm> --runner pooling --convert classify` the same way, so a local
  test server and a real vLLM are interchangeable. A request's `model` names the RM. Whole texts
  (`input`) are scored by Hugging Face classifiers (`ClassifierRM.score_texts`); the chat form
  (`messages`: the question and the response) by any text-only RM, which formats them itself.
- laser's `POST /score` (`RemoteRM`, see `laser.rewards.remote`), which carries both the policy's
  prompt and the raw question.

Tests build a `RewardServer` around a pool object on port 0 and `start()` it in a background thread.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from laser.errors import LaserConfigError
from laser.rewards.base import ScoringBatch
from laser.rewards.classify_api import (
    ClassifyRequest,
    ClassifyRequestError,
    classify_response,
    error_response,
    models_response,
    parse_classify_request,
)
from laser.rewards.errors import RewardModelError
from laser.rewards.http_client import wait_for
from laser.rewards.pool import RewardModelPool
from laser.rewards.pool_config import build_pool  # noqa: F401  (laser.rewards.server.build_pool, as before)
from laser.tasks.base import Example

log = logging.getLogger(__name__)
_DRAIN_LIMIT = 64 * 2**20  # an oversize body up to this is read and dropped, so the client sees the 413
_ROUTES = "use GET /health, GET /v1/models, POST /classify (vLLM's shape) or POST /score (laser's)"


class RewardServer:
    """Serves `pool`'s RMs at http://host:port (port 0: any free port; see `url`).

    Requests are accepted concurrently but scored one at a time: RMs are not thread-safe and share
    one device, so concurrent batches would only contend for it.

    Args:
        pool: the RMs to serve, by their pool names (the pool's placement and timeout apply).
        host: 127.0.0.1 serves this machine only; 0.0.0.0 the network (there is no authentication).
        max_request_bytes: larger bodies get 413 (8 MB holds ~1,000 responses of 2,000 words).
        max_batch: more responses per request get 400; bounds one request's memory and time.
    """

    def __init__(self, pool: RewardModelPool, host: str = "127.0.0.1", port: int = 8765,
                 max_request_bytes: int = 8 * 2**20, max_batch: int = 1024) -> None:
        self.pool = pool
        self.max_request_bytes, self.max_batch = int(max_request_bytes), int(max_batch)
        self.requests = 0  # POST requests received (/score, /classify), answered or refused
        self._score_lock, self._count_lock = threading.Lock(), threading.Lock()
        self._httpd = ThreadingHTTPServer((host, int(port)), _Handler)
        self._httpd.reward_server = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL clients use, with the actual port."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> RewardServer:
        """Serve in a background (daemon) thread; `shutdown()` stops it."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="laser-rm-server", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self._httpd.serve_forever()

    def shutdown(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:  # shutdown() waits for serve_forever: only call it when it runs
            self._httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._httpd.server_close()

    def count_request(self) -> None:
        with self._count_lock:
            self.requests += 1

    def handle_score(self, payload: Any) -> tuple[int, dict[str, Any]]:
        """The status and JSON answer for a decoded POST /score body."""
        if not isinstance(payload, dict):
            return 400, {"error": 'expected a JSON object {"rm": ..., "prompts": [...], "responses": [...]}'}
        name, prompts, responses = payload.get("rm"), payload.get("prompts"), payload.get("responses")
        if name not in self.pool.names:
            return 404, {"error": f"unknown RM {name!r}: this server has {self.pool.names}"}
        questions = payload.get("questions", prompts)  # raw questions; older clients send none
        texts = (prompts, responses, questions)
        if not all(isinstance(t, list) and all(isinstance(s, str) for s in t) for t in texts):
            return 400, {"error": '"prompts", "responses" and "questions" must be lists of strings'}
        if not len(prompts) == len(responses) == len(questions):
            return 400, {"error": f"{len(prompts)} prompts, {len(responses)} responses and {len(questions)} "
                                  "questions: expected one each"}
        if len(responses) > self.max_batch:
            return 400, {"error": f"{len(responses)} responses is over max_batch={self.max_batch}: "
                                  "send smaller batches"}
        arm = self.pool.index(name)
        rm = self.pool[arm]
        if not rm.text_only:
            return 400, {"error": f"RM {name!r} ({type(rm).__name__}) reads the task or the examples (gold "
                                  "answers, categories), which a request does not carry: it cannot be served "
                                  "remotely"}
        # The examples carry the raw questions: what a chat RM reads (`ScoringBatch.rm_prompts`).
        examples = [Example(uid=f"remote-{i}", question=q, answer="") for i, q in enumerate(questions)]
        with self._score_lock:
            tokens = self.pool.token_counts()[name]
            try:
                scores = self.pool.score([arm], ScoringBatch(prompts, responses, examples))[arm]
            except (RewardModelError, LaserConfigError) as error:
                return 500, {"error": str(error)}
            tokens = self.pool.token_counts()[name] - tokens
        return 200, {"scores": scores.tolist(), "tokens": tokens}


    def handle_classify(self, payload: Any) -> tuple[int, dict[str, Any]]:
        """The status and JSON answer (vLLM's shapes) for a decoded POST /classify body."""
        try:
            request = parse_classify_request(payload)
            name = self._served_name(request.model)
            if len(request) > self.max_batch:
                raise ClassifyRequestError(400, f"{len(request)} inputs is over max_batch={self.max_batch}: "
                                                "send smaller batches", "input")
            with self._score_lock:
                scores, tokens = self._classify(name, request)
        except ClassifyRequestError as error:
            return error.status, error_response(error.status, str(error), error.param)
        except (RewardModelError, LaserConfigError) as error:
            status = 400 if isinstance(error, LaserConfigError) else 500
            return status, error_response(status, str(error))
        return 200, classify_response(name, scores, tokens, request.use_activation)

    def _served_name(self, model: str | None) -> str:
        """The RM a request's `model` names (None: the only text-only RM, if there is one)."""
        servable = [self.pool[arm].name for arm in range(len(self.pool)) if self.pool[arm].text_only]
        if model is None and len(servable) == 1:
            return servable[0]
        if model not in self.pool.names:
            raise ClassifyRequestError(404, f"The model `{model}` does not exist: this server has "
                                            f"{self.pool.names}", "model")
        if not self.pool[self.pool.index(model)].text_only:
            raise ClassifyRequestError(400, f"RM {model!r} reads the task or the examples (gold answers, "
                                            "categories), which a request does not carry: it cannot be served", "model")
        return model

    def _classify(self, name: str, request: ClassifyRequest) -> tuple[list[float], int]:
        """Raw scores of the request's inputs by RM `name`, and the tokens it read."""
        arm = self.pool.index(name)
        rm, before = self.pool[arm], self.pool.token_counts()[name]
        if request.conversation is not None:  # through the pool: its placement, timeout and counters apply
            question, response = request.conversation
            batch = ScoringBatch([question], [response], [Example(uid="remote-0", question=question, answer="")])
            return self.pool.score([arm], batch)[arm].tolist(), self.pool.token_counts()[name] - before
        before = rm.tokens_processed
        if not hasattr(rm, "score_texts"):
            raise ClassifyRequestError(400, f"RM {name!r} ({type(rm).__name__}) scores a question and a response, "
                                            "not whole texts: send the chat form (\"messages\")", "input")
        rm.to(self.pool.device)
        if request.texts is not None:
            scores = rm.score_texts(request.texts, request.add_special_tokens)
        else:
            scores = rm.score_ids(request.token_ids)
        return scores.tolist(), rm.tokens_processed - before


class _Handler(BaseHTTPRequestHandler):
    server_version = "laser-rm"
    timeout = 60  # seconds: a client that stops sending mid-body does not hold a thread forever

    @property
    def reward_server(self) -> RewardServer:
        return self.server.reward_server  # type: ignore[attr-defined]

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        if self.path.rstrip("/") == "/health":
            self._send(200, {"status": "ok", "rms": self.reward_server.pool.names})
        elif self.path.rstrip("/") == "/v1/models":
            self._send(200, models_response(self.reward_server.pool.names))
        else:
            self._send(404, {"error": f"no such path {self.path!r}: {_ROUTES}"})

    def do_POST(self) -> None:  # noqa: N802
        server = self.reward_server
        route = self.path.rstrip("/")
        if route not in ("/score", "/classify"):
            self._send(404, {"error": f"no such path {self.path!r}: {_ROUTES}"})
            return
        server.count_request()
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._send(400, {"error": "a POST needs a Content-Length header"})
            return
        if length > server.max_request_bytes:
            self._drain(length)
            self._send(413, {"error": f"request body of {length} bytes is over max_request_bytes="
                                      f"{server.max_request_bytes}: send smaller batches"})
            return
        try:
            payload = json.loads(self.rfile.read(length))
        except ValueError as error:
            self._send(400, {"error": f"request body is not JSON: {error}"})
            return
        self._send(*(server.handle_score(payload) if route == "/score" else server.handle_classify(payload)))

    def _drain(self, length: int) -> None:
        """Read and drop an oversize body: closing with unread data resets the connection, and the
        client would see a reset instead of the 413. Past `_DRAIN_LIMIT`, just close."""
        if length > _DRAIN_LIMIT:
            self.close_connection = True
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 2**16))
            if not chunk:
                break
            length -= len(chunk)

    def _send(self, status: int, answer: dict[str, Any]) -> None:
        body = json.dumps(answer).encode()  # NaN/inf scores become NaN/Infinity, which Python reads back
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        log.debug("%s %s", self.address_string(), format % args)


def main(argv: list[str] | None = None) -> None:
    """Serve an RM pool until interrupted (or, with --wait-for, wait until a server answers)."""
    parser = argparse.ArgumentParser(description="Serve the text-only RMs of an rm_pool over HTTP: vLLM's "
                                                 "/classify shape and laser's /score.")
    parser.add_argument("--pool", help="rm_pool config name (e.g. reasoning_7b) or yaml path")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 exposes it to the network (no auth)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--max-request-bytes", type=int, default=8 * 2**20)
    parser.add_argument("--max-batch", type=int, default=1024)
    parser.add_argument("--wait-for", metavar="URL", help="serve nothing: exit 0 once the server at URL answers "
                                                          "(exit 1 after --timeout seconds); e.g. a vLLM loading")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds --wait-for waits")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. rm_pool.device=cuda:1")
    args = parser.parse_args(argv)
    if args.wait_for:
        problem = wait_for(args.wait_for, args.timeout)
        if problem:
            sys.exit(f"laser: error: {problem}")
        return
    if not args.pool:
        parser.error("give --pool (serve it) or --wait-for URL")
    server = RewardServer(build_pool(args.pool, args.overrides), args.host, args.port,
                          args.max_request_bytes, args.max_batch)
    print(f"serving {server.pool.names} at {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
