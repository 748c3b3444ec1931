"""An RM behind an OpenRLHF-compatible reward server: the server written for OpenRLHF is an arm as it is.

    python -m openrlhf.cli.serve_rm --reward_pretrain OpenRLHF/Llama-3-8b-rm-700k --port 5000 --bf16 \
        --max_len 8192 --batch_size 16                 # or any rule-based server with the same JSON
    python -m laser.run rm_pool=openrlhf rm_pool.models.openrlhf_rm.url=http://<host>:5000

The request is what OpenRLHF's `remote_rm_fn` (`openrlhf/utils/remote_rm_utils.py`) posts to
`--remote_rm_url`: `{"query": [prompt + response, ...], "prompts": [...], "labels": [...]}`; the answer is
`{"rewards": [...]}` (`scores` and `extra_logs`, as `openrlhf/cli/serve_rm.py` adds them, are optional and
ignored). OpenRLHF's query is the actor's decoded sequence, the prompt as the policy was given it then
the response; here it is the same: the policy's prompt + the response. `labels` are the examples' gold
answers (the dataset's label column, what a rule-based server grades with); `send_labels: false` sends
empty strings instead. A null reward is NaN here: a fault of that step (see the README).

Cost per call: one HTTP request per `batch_size` responses; the server's forward pass is the RM's cost.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from laser.errors import LaserConfigError
from laser.rewards.base import RewardModel, ScoringBatch
from laser.rewards.errors import RewardOutputError
from laser.rewards.http_client import HTTPEndpoint, RemoteArm, RemoteRMError


class OpenRLHFRewardRM(RemoteArm, RewardModel):
    """Scores with an OpenRLHF reward server (`serve_rm.py`'s `/get_reward`, or any server of its JSON).

    Args:
        url: the server, e.g. "http://10.0.0.5:5000".
        path: the scoring route (`/get_reward` for `serve_rm.py`; OpenRLHF posts to the whole URL it is
            given, so a custom server may use another).
        score_key: the answer's list of rewards ("rewards"; OpenRLHF's `score_key`).
        send_labels: send each example's gold answer as its label (rule-based servers grade with it).
        batch_size: responses per request.
        max_in_flight, timeout_s, retries, backoff_s, token_env: as for `HTTPEndpoint`.
    """

    # serve_rm.py has no health route: any HTTP answer to a GET of the scoring route (FastAPI's 405)
    # shows a server is there; only no answer, 401/403 or 5xx stop the run (`HTTPEndpoint.probe`).
    health_path = "/get_reward"

    def __init__(self, url: str, path: str = "/get_reward", score_key: str = "rewards", send_labels: bool = True,
                 batch_size: int = 64, max_in_flight: int = 4, timeout_s: float = 180.0, retries: int = 3,
                 backoff_s: float = 0.5, token_env: str | None = None) -> None:
        super().__init__()
        if int(batch_size) < 1 or not str(path).startswith("/"):
            raise LaserConfigError(f"OpenRLHFRewardRM needs batch_size >= 1 and a path starting with '/'; got "
                                   f"{batch_size}, {path!r}")
        self.endpoint = HTTPEndpoint(url, token_env, timeout_s, retries, backoff_s, max_in_flight)
        self.path = self.health_path = str(path)
        self.score_key, self.send_labels, self.batch_size = str(score_key), bool(send_labels), int(batch_size)

    @property
    def text_only(self) -> bool:  # type: ignore[override]
        """Labels are gold answers, which a request to laser's own server does not carry."""
        return not self.send_labels

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        """One request per `batch_size` responses; float32 scores on the CPU."""
        labels = [e.answer if self.send_labels else "" for e in batch.examples]
        payloads = [{"query": [p + r for p, r in zip(batch.prompts[i:i + self.batch_size],
                                                     batch.responses[i:i + self.batch_size], strict=True)],
                     "prompts": batch.prompts[i:i + self.batch_size], "labels": labels[i:i + self.batch_size]}
                    for i in range(0, len(batch), self.batch_size)]
        scores: list[float] = []
        for payload, answer in zip(payloads, self.endpoint.post_many(self.path, payloads), strict=True):
            scores += self.read_rewards(answer, len(payload["query"]))
        return torch.tensor(scores, dtype=torch.float32)

    def read_rewards(self, answer: Any, expected: int) -> list[float]:
        """`answer[score_key]` as floats (null: NaN); a count that is not `expected` is a wrong_count fault."""
        rewards = answer.get(self.score_key) if isinstance(answer, dict) else None
        if not isinstance(rewards, list):
            keys = sorted(answer) if isinstance(answer, dict) else type(answer).__name__
            raise RemoteRMError(f"{self.endpoint.url}{self.path} answered without a {self.score_key!r} list "
                                f"(got {keys})")
        if len(rewards) != expected:
            raise RewardOutputError(self.name, f"at {self.endpoint.url}{self.path} returned {len(rewards)} "
                                               f"reward(s) for {expected} query(ies)")
        try:
            return [math.nan if r is None else float(r[0] if isinstance(r, list) else r) for r in rewards]
        except (TypeError, ValueError, IndexError):
            raise RemoteRMError(f"{self.endpoint.url}{self.path} answered rewards that are not numbers: "
                                f"{str(rewards)[:120]}") from None
