"""A generative RM: an LLM judge behind any OpenAI-compatible `/v1/chat/completions` server (vLLM included).

    vllm serve Qwen/Qwen2.5-7B-Instruct --port 8001                      # or any OpenAI-compatible server
    LASER_JUDGE_TOKEN=... python -m laser.run rm_pool=openai_judge rm_pool.models.judge.url=http://<host>:8001

Each response is one chat request (`max_in_flight` at once): the judging prompt (`prompt`, with
`{question}` and `{response}` filled in; an optional `system` message) in, the judge's reply out, and the
score is the first group of `score_pattern` in the reply. The default prompt and pattern are MT-Bench's
single-answer grading ("Rating: [[7]]", 1 to 10). A reply without a score in [`min_score`, `max_score`]
is a parse failure: that response's score is NaN, which the step treats as an RM fault (skipped, or
penalised with `laser.on_rm_fault=penalise`), counted in `parse_failures` and warned once with the
reply. Request and response follow OpenAI's chat completions API as vLLM serves it
(`vllm/entrypoints/openai/protocol.py`: `ChatCompletionRequest`, `choices[0].message.content`).

Cost per call: one generation of up to `max_tokens` tokens per response (a judge reading a 500-token
response and writing a 10-token rating costs about 0.5 s on a 7B model at batch 1; `max_in_flight`
lets the server batch them).
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

import torch

from laser.errors import LaserConfigError
from laser.rewards.base import RewardModel, ScoringBatch
from laser.rewards.http_client import HTTPEndpoint, RemoteArm, RemoteRMError

log = logging.getLogger(__name__)

DEFAULT_SYSTEM = "You are a helpful assistant."
DEFAULT_PROMPT = (  # MT-Bench's single-answer grading prompt (FastChat's judge_prompts "single-v1")
    "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response provided by an AI "
    "assistant to the user question displayed below. Your evaluation should consider factors such as the "
    "helpfulness, relevance, accuracy, depth, creativity, and level of detail of the response. Begin your "
    "evaluation by providing a short explanation. Be as objective as possible. After providing your explanation, "
    "you must rate the response on a scale of 1 to 10 by strictly following this format: \"[[rating]]\", for "
    "example: \"Rating: [[5]]\".\n\n[Question]\n{question}\n\n[The Start of Assistant's Answer]\n{response}\n"
    "[The End of Assistant's Answer]"
)
DEFAULT_PATTERN = r"\[\[(-?\d+(?:\.\d+)?)\]\]"


class OpenAIJudgeRM(RemoteArm, RewardModel):
    """Scores each (question, response) by asking an LLM judge and parsing its rating.

    Args:
        url: the server's base URL, e.g. "http://10.0.0.5:8001" (the API lives under /v1).
        model: the judge's name as the server lists it (`GET /v1/models`).
        prompt: the user message; `{question}` and `{response}` are filled in (other braces: doubled).
        system: a system message (null: none).
        score_pattern: a regular expression whose first group is the score (the first match counts).
        min_score, max_score: the valid range; a score outside it is a parse failure.
        max_tokens: longest reply; the rating must come before it ends.
        temperature: 0 makes the judge as deterministic as the server allows.
        max_in_flight, timeout_s, retries, backoff_s, token_env: as for `HTTPEndpoint`.
    """

    health_path = "/v1/models"

    def __init__(self, url: str, model: str, prompt: str = DEFAULT_PROMPT, system: str | None = DEFAULT_SYSTEM,
                 score_pattern: str = DEFAULT_PATTERN, min_score: float = 1.0, max_score: float = 10.0,
                 max_tokens: int = 512, temperature: float = 0.0, max_in_flight: int = 8, timeout_s: float = 120.0,
                 retries: int = 3, backoff_s: float = 0.5, token_env: str | None = None) -> None:
        super().__init__()
        try:
            self.pattern = re.compile(score_pattern)
            prompt.format(question="q", response="r")
        except (re.error, KeyError, IndexError, ValueError) as error:
            raise LaserConfigError(f"OpenAIJudgeRM: bad score_pattern or prompt ({error}); the prompt may name only "
                                   "{question} and {response} (double other braces)") from None
        if self.pattern.groups < 1 or not min_score < max_score or int(max_tokens) < 1:
            raise LaserConfigError(f"OpenAIJudgeRM needs a score_pattern with a group, min_score < max_score and "
                                   f"max_tokens >= 1; got {score_pattern!r}, {min_score}, {max_score}, {max_tokens}")
        self.endpoint = HTTPEndpoint(url, token_env, timeout_s, retries, backoff_s, max_in_flight)
        self.model, self.prompt, self.system = str(model), str(prompt), system
        self.min_score, self.max_score = float(min_score), float(max_score)
        self.max_tokens, self.temperature = int(max_tokens), float(temperature)
        self.tokens_processed = 0
        self.parse_failures = 0  # replies without a score in range (each made that response's score NaN)

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        """One chat request per response; the parsed scores (NaN where the reply had none)."""
        payloads = [self.request(question, response)
                    for question, response in zip(batch.rm_prompts(), batch.responses, strict=True)]
        answers = self.endpoint.post_many("/v1/chat/completions", payloads)
        return torch.tensor([self.parse(self.reply(answer)) for answer in answers], dtype=torch.float32)

    def request(self, question: str, response: str) -> dict[str, Any]:
        """The chat completions request that asks the judge to rate `response` to `question`."""
        messages = [{"role": "system", "content": self.system}] if self.system else []
        messages.append({"role": "user", "content": self.prompt.format(question=question, response=response)})
        return {"model": self.model, "messages": messages, "max_tokens": self.max_tokens,
                "temperature": self.temperature}

    def reply(self, answer: Any) -> str:
        """`choices[0].message.content` of a chat completion (tokens counted); RemoteRMError if absent."""
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise RemoteRMError(f"{self.endpoint.url}/v1/chat/completions answered without "
                                f"choices[0].message.content: {str(answer)[:120]}") from None
        usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
        self.tokens_processed += int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)
        return content if isinstance(content, str) else ""

    def parse(self, reply: str) -> float:
        """The score in a judge's reply, or NaN (a parse failure, counted and warned once)."""
        match = self.pattern.search(reply)
        try:
            value = float(match.group(1)) if match else math.nan
        except (TypeError, ValueError):  # a pattern whose group caught something else than a number
            value = math.nan
        if self.min_score <= value <= self.max_score:
            return value
        self.parse_failures += 1
        if self.parse_failures == 1:
            log.warning("RM %s: no score in [%g, %g] in the judge's reply %r (score_pattern %r); its score is NaN, "
                        "a fault of this step", self.name, self.min_score, self.max_score, reply[:200],
                        self.pattern.pattern)
        return math.nan
