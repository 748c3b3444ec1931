"""HTTP for the reward models that live on a server: JSON POST and GET with a timeout, retries with
backoff, a bounded number of requests in flight, a bearer token from the environment, and the server's
error body turned into one line.

Every remote arm (`RemoteRM`, `VLLMClassifyRM`, `OpenRLHFRewardRM`, `OpenAIJudgeRM`) talks through one
`HTTPEndpoint`, so they fail the same way: a connection error, a timeout, a 408 / 429 or a 5xx answer is
retried `retries` times (waiting `backoff_s`, then twice that, ...); any other answer but 200 is the
request's own fault and is not retried. What is left is one `RemoteRMError` line naming the server (its
URL without credentials), the status and the server's message, which the pool counts as a fault of
that RM. The token is sent as `Authorization: Bearer ...`, read from the variable `token_env` names at
each request (never stored in the config, so never in `config.yaml`, `results.json` or W&B), and
masked in every message.

http.client, not urllib or requests: no proxy settings from the environment get between laser and the
server, and no dependency is added.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any
from urllib.parse import urlsplit

from laser.errors import LaserConfigError

RETRIED_STATUSES = (408, 429)  # plus every 5xx: the server may answer the same request later


class RemoteRMError(ConnectionError):
    """A remote RM could not score: the server is unreachable, failed, or refused the request."""


def error_message(raw: bytes) -> str:
    """The message of an error body, one line: vLLM's `{"error": {"message": ...}}` (and OpenAI's), vLLM's
    older flat `{"object": "error", "message": ...}`, laser's `{"error": "..."}`, FastAPI's `{"detail": ...}`,
    else the body's first 200 characters."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "message" in error:
            return _one_line(error["message"])
        if isinstance(error, str):
            return _one_line(error)
        for key in ("message", "detail"):
            if key in body:
                return _one_line(body[key] if isinstance(body[key], str) else json.dumps(body[key]))
    return _one_line(raw[:200].decode(errors="replace")) or "(empty body)"


def _one_line(text: Any) -> str:
    return " | ".join(line.strip() for line in str(text).strip().splitlines() if line.strip())[:300]


class _Abandoned(Exception):
    """A request of `post_many` not sent because another one of the same call had failed for good."""


class HTTPEndpoint:
    """One server at `url`: what every remote arm sends its requests through.

    Args:
        url: the server's base URL, e.g. "http://10.0.0.5:8000" (a path prefix is kept).
        token_env: name of the environment variable holding a bearer token (null: no token). Only the
            name is configured, so the token never enters the config or the run folder.
        timeout_s: seconds one request may wait for the server (connect, send, each read).
        retries: extra attempts after a connection error, a timeout, 408, 429 or a 5xx answer.
        backoff_s: wait before the first retry; doubles every retry.
        max_in_flight: requests `post_many` keeps open at once; more keep a server busier, up to
            its own batching limit (vLLM's max_num_seqs), and cost a thread each here.
    """

    def __init__(self, url: str, token_env: str | None = None, timeout_s: float = 60.0, retries: int = 3,
                 backoff_s: float = 0.5, max_in_flight: int = 4) -> None:
        parts = urlsplit(str(url))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LaserConfigError(f"url={url!r} must look like http://HOST:PORT (or https://...)")
        if int(max_in_flight) < 1 or int(retries) < 0 or float(timeout_s) <= 0 or float(backoff_s) < 0:
            raise LaserConfigError(f"a remote RM needs max_in_flight >= 1, retries >= 0, timeout_s > 0 and "
                                   f"backoff_s >= 0; got {max_in_flight}, {retries}, {timeout_s}, {backoff_s}")
        self._parts = parts
        self.url = f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}" \
                   f"{parts.path.rstrip('/')}"  # no user:password@, no query: safe to print
        self.token_env = str(token_env) if token_env else None
        self.timeout_s, self.retries, self.backoff_s = float(timeout_s), int(retries), float(backoff_s)
        self.max_in_flight = int(max_in_flight)

    def check(self) -> None:
        """A `token_env` that names an unset variable is a config mistake: say so before any request."""
        if self.token_env and not os.environ.get(self.token_env):
            raise LaserConfigError(f"token_env={self.token_env!r} for {self.url}: that environment variable is "
                                   "not set (export it, or set token_env: null for a server without a token)")

    def post(self, path: str, payload: Any, abandon: threading.Event | None = None) -> Any:
        """POST `payload` as JSON to `path`, retried as the class says; the decoded JSON answer of a 200.
        Once `abandon` is set (another request of the same call failed for good), no retry is made."""
        body = json.dumps(payload).encode()
        backoff = abandon or threading.Event()  # an event never set: waiting on it is a plain sleep
        problem, attempts = "", 0
        for attempts in range(1, self.retries + 2):
            if attempts > 1 and backoff.wait(self.backoff_s * 2 ** (attempts - 2)):
                attempts -= 1  # abandoned: this attempt was not made
                break
            try:
                status, raw = self.request("POST", path, body)
            except (OSError, http.client.HTTPException) as error:  # refused, reset, timed out
                problem = f"{type(error).__name__}: {error}"
                continue
            if status == 200:
                try:
                    return json.loads(raw)
                except ValueError:
                    problem = f"HTTP 200 with a body that is not JSON: {error_message(raw)}"
                    break
            problem = f"HTTP {status}: {error_message(raw)}"
            if status < 500 and status not in RETRIED_STATUSES:  # the request itself is wrong
                break
        raise RemoteRMError(self.mask(f"POST {self.url}{path} failed after {attempts} attempt(s): {problem}"))

    def post_many(self, path: str, payloads: Sequence[Any]) -> list[Any]:
        """`post` each payload, at most `max_in_flight` at once; the answers in order. The first request
        to fail for good fails the call: requests not yet sent are dropped, those in flight are not
        retried, and the failure is raised once they have ended (none is left running behind)."""
        if len(payloads) <= 1 or self.max_in_flight == 1:
            return [self.post(path, payload) for payload in payloads]
        abandon = threading.Event()

        def send(payload: Any) -> Any:  # a worker that fails for good stops the others before taking more
            if abandon.is_set():
                raise _Abandoned
            try:
                return self.post(path, payload, abandon)
            except Exception:
                abandon.set()
                raise

        with ThreadPoolExecutor(max_workers=min(self.max_in_flight, len(payloads)),
                                thread_name_prefix="laser-rm-http") as pool:
            futures = [pool.submit(send, payload) for payload in payloads]
            for future in as_completed(futures):
                if future.exception() is not None and not isinstance(future.exception(), _Abandoned):
                    for other in futures:
                        other.cancel()
                    raise future.exception()
        return [f.result() for f in futures]

    def get(self, path: str) -> tuple[int, bytes]:
        """One GET, not retried: the status and the raw body."""
        return self.request("GET", path, None)

    def probe(self, path: str) -> tuple[str | None, Any]:
        """One GET of `path`: why the server cannot serve (unreachable, refusing the token, failing) or
        None, and the decoded JSON answer (None if it is not JSON). Any answer but 401 / 403 / 5xx means
        a server is there (a 404 or 405 too: a server without that route, such as OpenRLHF's, answered)."""
        try:
            status, raw = self.get(path)
        except (OSError, http.client.HTTPException) as error:
            return self.mask(f"{self.url} is unreachable (GET {path}: {type(error).__name__}: {error})"), None
        if status in (401, 403):
            return self.mask(f"{self.url} refused the request (GET {path}: HTTP {status}: {error_message(raw)}); "
                             f"check token_env={self.token_env!r}"), None
        if status >= 500:
            return self.mask(f"{self.url} is failing (GET {path}: HTTP {status}: {error_message(raw)})"), None
        try:
            return None, json.loads(raw) if status == 200 else None
        except ValueError:
            return None, None

    def request(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        """One request with the token; the status and the raw body."""
        cls = http.client.HTTPSConnection if self._parts.scheme == "https" else http.client.HTTPConnection
        connection = cls(self._parts.hostname, self._parts.port, timeout=self.timeout_s)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        token = os.environ.get(self.token_env, "") if self.token_env else ""
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            connection.request(method, f"{self._parts.path.rstrip('/')}{path}", body, headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def mask(self, text: str) -> str:
        """`text` with the token (if any) replaced by ***: a server may echo it in an error."""
        token = os.environ.get(self.token_env, "") if self.token_env else ""
        return text.replace(token, "***") if len(token) >= 4 else text


def wait_for(url: str, timeout_s: float) -> str | None:
    """Wait until a server at `url` answers GET /health (any answer but 401/403/5xx: vLLM and laser have
    the route, others answer 404); None once it does, else the last problem after `timeout_s` seconds."""
    endpoint, deadline = HTTPEndpoint(url, timeout_s=5.0), time.monotonic() + timeout_s
    while True:
        problem = endpoint.probe("/health")[0]
        if problem is None or time.monotonic() > deadline:
            return problem
        time.sleep(0.5)


class RemoteArm:
    """Mixin of the RMs that score on a server: `endpoint` is their `HTTPEndpoint`, `health_path` what
    the preflight GETs before step 1 (`laser.config.remote_check`), `model` the served model's name or
    None. `check` (at pool build) checks the token variable; nothing is contacted then."""

    endpoint: HTTPEndpoint
    health_path: str = "/health"
    model: str | None = None

    def check(self) -> None:
        """The token variable is set (cheap, no request)."""
        self.endpoint.check()

    def preflight(self) -> str | None:
        """Why this arm cannot score (one line), or None: its server answers `health_path`, and where that
        is an OpenAI-style `/v1/models`, lists `model`."""
        problem, answer = self.endpoint.probe(self.health_path)
        if problem or self.model is None or self.health_path != "/v1/models" or not isinstance(answer, dict):
            return problem
        served = [m.get("id") for m in answer.get("data", []) if isinstance(m, dict)]
        if self.model not in served:
            return f"{self.endpoint.url} does not serve model {self.model!r} (GET /v1/models lists {served})"
        return None
