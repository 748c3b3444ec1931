"""Reward models over HTTP: serve a pool's RMs from one machine, score them from another.

Large RMs can live on their own GPU server while training runs elsewhere; the bandit still picks one
RM per batch, and only that RM's server does work.

    python -m laser.rewards.server --pool reasoning_7b --port 8765   # serve (rm_pool name or yaml path)
    python -m laser.run rm_pool=remote_example                       # train against it

The same server also speaks vLLM's `/classify` shape (`laser.rewards.vllm_classify.VLLMClassifyRM`), so a
local test server and a real `vllm serve` are interchangeable. `RemoteRM` uses laser's own route, which
carries both the policy's prompt and the raw question (an RM may read either):

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

import torch

from laser.errors import LaserConfigError
from laser.rewards.base import RewardModel, ScoringBatch
from laser.rewards.http_client import HTTPEndpoint, RemoteArm, RemoteRMError
from laser.rewards.server import main

__all__ = ["RemoteRM", "RemoteRMError", "main"]


class RemoteRM(RemoteArm, RewardModel):
    """An RM served by `python -m laser.rewards.server` at `url`, under the pool name `rm`.

    Only texts travel, so the served RM must score from prompt and response alone (not the verifier).
    Requests go through `HTTPEndpoint` (retries with backoff on connection errors and 5xx, no retry on
    a 4xx, at most `max_in_flight` at once). `tokens_processed` adds the server's token counts, so the
    pool's accounting still shows the RM's compute.

    Args:
        url: the server, e.g. "http://10.0.0.5:8765".
        rm: the RM's name in the served pool.
        batch_size: responses per request; smaller requests retry cheaper, larger ones cost fewer trips.
        timeout_s: seconds to wait for one request (a 7B RM scoring 64 long responses can take ~10 s).
        retries: extra attempts per request after the first fails.
        backoff_s: wait before the first retry; doubles every retry.
        max_in_flight: requests sent at once (the server scores them one at a time).
        token_env: name of the environment variable holding a bearer token (null: none).
    """

    def __init__(self, url: str, rm: str, batch_size: int = 64, timeout_s: float = 30.0, retries: int = 3,
                 backoff_s: float = 0.5, max_in_flight: int = 1, token_env: str | None = None) -> None:
        super().__init__()
        self.endpoint = HTTPEndpoint(url, token_env, timeout_s, retries, backoff_s, max_in_flight)
        if int(batch_size) < 1:
            raise LaserConfigError(f"RemoteRM batch_size={batch_size!r} must be >= 1")
        self.url, self.rm, self.batch_size = self.endpoint.url, str(rm), int(batch_size)
        self.tokens_processed = 0

    def preflight(self) -> str | None:
        """The server answers GET /health and serves `rm`."""
        problem, answer = self.endpoint.probe("/health")
        served = answer.get("rms") if isinstance(answer, dict) else None
        if problem is None and isinstance(served, list) and self.rm not in served:
            return f"{self.url} does not serve RM {self.rm!r} (GET /health lists {served})"
        return problem

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        """One request per `batch_size` responses; float32 scores on the CPU."""
        questions = batch.rm_prompts()
        starts = range(0, len(batch), self.batch_size)
        payloads = [{"rm": self.rm, "prompts": batch.prompts[i:i + self.batch_size],
                     "responses": batch.responses[i:i + self.batch_size],
                     "questions": questions[i:i + self.batch_size]} for i in starts]
        scores: list[float] = []
        for payload, answer in zip(payloads, self.endpoint.post_many("/score", payloads), strict=True):
            chunk = answer.get("scores") if isinstance(answer, dict) else None
            if not isinstance(chunk, list) or len(chunk) != len(payload["responses"]):
                raise RemoteRMError(f"remote RM {self.rm!r} at {self.url} answered without one score per response")
            scores.extend(float("nan") if value is None else float(value) for value in chunk)
            self.tokens_processed += int(answer.get("tokens", 0))
        return torch.tensor(scores, dtype=torch.float32)


if __name__ == "__main__":
    main()
