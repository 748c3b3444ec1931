"""TRL-style reward functions as arms: called as GRPOTrainer calls them (`f(prompts=, completions=, **columns)`,
sync or async), None made NaN (a fault of that step), a bad function refused when the pool is built."""

from __future__ import annotations

import asyncio
import math
import sys
import types

import pytest
import torch

from laser.errors import LaserConfigError
from laser.rewards.base import ScoringBatch
from laser.rewards.errors import RewardModelError
from laser.rewards.pool import RewardModelPool
from laser.rewards.reward_functions import answer_match
from laser.rewards.trl_function import TRLRewardFunction
from laser.tasks.base import Example


def batch() -> ScoringBatch:
    examples = [Example("a-1", "What is 2 + 3?", "5", category="addition", meta={"a": 2, "b": 3}),
                Example("a-2", "Is 7 larger than 9?", "no", category="comparison", meta={"a": 7, "b": 9}),
                Example("a-3", "Who wrote it?", "", category="open", meta={"a": 0, "b": 0})]
    return ScoringBatch([f"Q: {e.question}\nA:" for e in examples], [" 5", " yes", " Tolstoy"], examples)


@pytest.fixture
def module(monkeypatch):
    """A module `user_rewards` in sys.modules, as a user's own reward file would be importable."""
    mod = types.ModuleType("user_rewards")
    monkeypatch.setitem(sys.modules, "user_rewards", mod)
    return mod


def test_the_function_gets_what_grpo_trainer_passes_and_none_becomes_nan(module):
    seen = {}

    def reward(prompts, completions, **kwargs):
        seen.update(prompts=prompts, completions=completions, **kwargs)
        return [1.0, 0, None]

    module.reward = reward
    rm = TRLRewardFunction("user_rewards.reward", columns={"solution": "answer"})
    rm.check()
    scores = rm.score(batch())
    assert seen["prompts"][0] == "Q: What is 2 + 3?\nA:" and seen["completions"] == [" 5", " yes", " Tolstoy"]
    assert seen["answer"] == seen["solution"] == ["5", "no", ""] and seen["category"][1] == "comparison"
    assert seen["a"] == [2, 7, 0] and seen["question"][2] == "Who wrote it?"  # meta keys are columns too
    assert scores.dtype == torch.float32 and scores[:2].tolist() == [1.0, 0.0] and math.isnan(scores[2])
    assert rm.not_applicable == 1


def test_async_functions_and_functions_without_kwargs_and_the_conversational_form(module):
    async def slow(completions, answer):  # no **kwargs: gets only what it names
        await asyncio.sleep(0)
        return [float(c.strip() == a) for c, a in zip(completions, answer, strict=True)]

    module.slow = slow
    assert TRLRewardFunction("user_rewards:slow").score(batch()).tolist() == [1.0, 0.0, 0.0]
    chat = TRLRewardFunction(answer_match, conversational=True)
    seen = {}
    module.spy = lambda prompts, completions, **kw: seen.update(p=prompts, c=completions) or answer_match(completions,
                                                                                                           **kw)
    TRLRewardFunction("user_rewards.spy", conversational=True).score(batch())
    assert seen["p"][0] == [{"role": "user", "content": "What is 2 + 3?"}]
    assert seen["c"][1] == [{"role": "assistant", "content": " yes"}]
    scores = chat.score(batch())
    assert scores[:2].tolist() == [1.0, 0.0] and math.isnan(scores[2])  # no gold answer: not applicable


def test_a_bad_function_is_refused_at_build_and_a_bad_result_is_a_fault(module):
    with pytest.raises(LaserConfigError, match="rm_pool.models.f: function='user_rewards.nope' cannot be imported"):
        RewardModelPool({"f": TRLRewardFunction("user_rewards.nope")})
    module.needs_ids = lambda prompts, completions, completion_ids, **kw: [0.0] * len(completions)
    with pytest.raises(LaserConfigError, match=r"requires \['completion_ids'\], which laser does not pass"):
        RewardModelPool({"f": TRLRewardFunction("user_rewards.needs_ids")})
    module.short = lambda prompts, completions, **kw: [1.0]
    module.broken = lambda prompts, completions, **kw: 1 / 0
    pool = RewardModelPool({"short": TRLRewardFunction("user_rewards.short"),
                            "broken": TRLRewardFunction("user_rewards.broken")})
    with pytest.raises(RewardModelError) as caught:
        pool.score([0], batch())
    assert caught.value.kind == "wrong_count" and "returned 1 rewards for 3 completions" in str(caught.value)
    with pytest.raises(RewardModelError, match="failed \\(error\\): ZeroDivisionError"):
        pool.score([1], batch())
    assert pool.fault_counts() == {"short": 1, "broken": 1}


def test_answer_match_reads_the_first_answer():
    completions = [" 5", " 05 apples", "no, 3", " 6", "", [{"role": "assistant", "content": "yes"}]]
    assert answer_match(completions, ["5", "5", "no", "5", "5", "yes"]) == [1.0, 1.0, 1.0, 0.0, 0.0, 1.0]
