"""Reward models over HTTP: serve a pool's RMs from one machine, score them from another.

Large RMs can live on their own GPU server while training runs elsewhere; the bandit still picks one
RM per batch, and only that RM's server does work.

    python -m laser.rewards.remote --pool reasoning_7b --port 8765   # serve (rm_pool name or yaml path)
    python -m laser.run rm_pool=remote_example                       # train against it

Protocol (JSON, one-line errors as {"error": "..."}):
    POST /score  {"rm": NAME, "prompts": [...], "responses": [...], "questions": [...]}
                 -> {"scores": [...], "tokens": N}
             ("questions", optional: each prompt's raw question, `ScoringBatch.rm_prompts()`, which a
             chat RM reads instead of the policy's prompt; without it the prompts stand in)
    GET  /health -> {"status": "ok", "rms": [names]}
Status codes: 404 unknown RM or path, 413 body over `max_request_bytes`, 400 malformed request, a
batch over `max_batch`, or an RM that reads the task/examples (the verifier: a request carries only
texts), 500 the RM failed. Scores may be NaN/inf (written as JSON NaN/Infinity, as Python reads them).
The server listens on 127.0.0.1 unless told otherwise and has no authentication: expose it only on
a trusted network.
"""

from __future__ import annotations

import argparse
import http.client
import json
import time
from typing import Any
from urllib.parse import urlsplit

import torch

from laser.errors import LaserConfigError
from laser.rewards.base import RewardModel, ScoringBatch
from laser.rewards.server import RewardServer, build_pool


class RemoteRMError(ConnectionError):
    """A remote RM could not score: the server is unreachable, failed, or refused the request."""


class RemoteRM(RewardModel):
    """An RM served by `python -m laser.rewards.remote` at `url`, under the pool name `rm`.

    Only texts travel, so the served RM must score from prompt and response alone (not the verifier).
    Connection errors and 5xx answers are retried `retries` times, waiting `backoff_s`, then twice
    that, and so on; a 4xx answer (a bad request) is not retried. `tokens_processed` adds the
    server's token counts, so the pool's accounting still shows the RM's compute.

    Args:
        url: the server, e.g. "http://10.0.0.5:8765".
        rm: the RM's name in the served pool.
        batch_size: responses per request; smaller requests retry cheaper, larger ones cost fewer trips.
        timeout_s: seconds to wait for one request (a 7B RM scoring 64 long responses can take ~10 s).
        retries: extra attempts per request after the first fails.
        backoff_s: wait before the first retry; doubles every retry.
    """

    def __init__(self, url: str, rm: str, batch_size: int = 64, timeout_s: float = 30.0, retries: int = 3,
                 backoff_s: float = 0.5) -> None:
        super().__init__()
        parts = urlsplit(str(url))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LaserConfigError(f"RemoteRM url={url!r} must look like http://HOST:PORT")
        if int(batch_size) < 1 or int(retries) < 0 or float(timeout_s) <= 0 or float(backoff_s) < 0:
            raise LaserConfigError(
                f"RemoteRM needs batch_size >= 1, retries >= 0, timeout_s > 0, backoff_s >= 0; got "
                f"{batch_size}, {retries}, {timeout_s}, {backoff_s}"
            )
        self.url, self.rm = str(url).rstrip("/"), str(rm)
        self.batch_size, self.timeout_s = int(batch_size), float(timeout_s)
        self.retries, self.backoff_s = int(retries), float(backoff_s)
        self._parts = parts
        self.tokens_processed = 0

    def check(self) -> None:
        """Nothing to check: the server may start after the pool is built."""

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        """One request per `batch_size` responses; float32 scores on the CPU."""
        scores: list[float] = []
        questions = batch.rm_prompts()
        for start in range(0, len(batch), self.batch_size):
            stop = start + self.batch_size
            answer = self._post({"rm": self.rm, "prompts": batch.prompts[start:stop],
                                 "responses": batch.responses[start:stop], "questions": questions[start:stop]})
            chunk = answer.get("scores")
            if not isinstance(chunk, list) or len(chunk) != len(batch.responses[start:stop]):
                raise RemoteRMError(
                    f"remote RM {self.rm!r} at {self.url} answered without one score per response"
                )
            scores.extend(float(value) for value in chunk)
            self.tokens_processed += int(answer.get("tokens", 0))
        return torch.tensor(scores, dtype=torch.float32)

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(payload).encode()
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                status, answer = self._request(body)
            except (OSError, http.client.HTTPException) as error:  # refused, reset, timed out
                problem = f"{type(error).__name__}: {error}"
                continue
            if status == 200:
                return answer
            problem = f"HTTP {status}: {answer.get('error', '')}"
            if status < 500:  # the request itself is wrong: retrying cannot help
                break
        raise RemoteRMError(
            f"remote RM {self.rm!r} at {self.url} failed after {attempt + 1} attempt(s): {problem}"
        )

    def _request(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """POST /score once; the status and the decoded JSON answer ({} if it is not JSON)."""
        # http.client, not urllib: no proxy settings from the environment get between us and the server.
        cls = http.client.HTTPSConnection if self._parts.scheme == "https" else http.client.HTTPConnection
        connection = cls(self._parts.hostname, self._parts.port, timeout=self.timeout_s)
        try:
            connection.request("POST", f"{self._parts.path.rstrip('/')}/score", body,
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = {"error": raw[:200].decode(errors="replace")}
        return response.status, answer if isinstance(answer, dict) else {}


def main(argv: list[str] | None = None) -> None:
    """Serve an RM pool until interrupted."""
    parser = argparse.ArgumentParser(description="Serve the RMs of an rm_pool over HTTP.")
    parser.add_argument("--pool", required=True, help="rm_pool config name (e.g. reasoning_7b) or yaml path")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 exposes it to the network (no auth)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--max-request-bytes", type=int, default=8 * 2**20)
    parser.add_argument("--max-batch", type=int, default=1024)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. rm_pool.device=cuda:1")
    args = parser.parse_args(argv)
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
