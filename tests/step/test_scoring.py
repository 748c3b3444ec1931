"""Scoring a step (laser/step/scoring.py) with the fake RMs of tests/rm_fakes.py: each chosen RM scores the
responses of exactly the prompts that chose it, once; an RM's fault comes back as a value, is counted, and
penalises only the arm that chose that RM."""

from __future__ import annotations

import pytest
import torch
from rm_fakes import AnswerTask, CountingRM, ScriptedRM

from laser.rewards.errors import RewardModelError
from laser.rewards.pool import RewardModelPool
from laser.runs.results import IterationTracker
from laser.selection.base import Selection
from laser.selection.score_ensemble import ScoreEnsemble
from laser.selection.single import SingleRM
from laser.step.decisions import Decision
from laser.step.scoring import handle_rm_fault, score_decisions, score_step
from laser.tasks.base import Example

N = 2  # responses per prompt
BATCH = [Example(uid=str(i), question=f"q{i}", answer="5") for i in range(3)]
PROMPTS = [f"prompt {i}" for i in range(3)]
RESPONSES = [f"p{i} r{j}" for i in range(3) for j in range(N)]


def decision(prompts: list[int], *arms: int) -> Decision:
    return Decision(prompts, torch.zeros(2), Selection(tuple(arms)))


class RecordingSelector(SingleRM):
    """A fixed selector that records the rewards it is given."""

    def __init__(self, num_arms: int) -> None:
        super().__init__(num_arms)
        self.rewards: list[tuple[tuple[int, ...], float]] = []

    def update(self, selection, context, reward, feedback=None) -> None:
        self.rewards.append((selection.arms, reward))


def test_each_chosen_rm_scores_only_its_prompts_responses_in_one_call():
    fakes = [CountingRM(), CountingRM(), CountingRM()]  # a CountingRM scores example uid + 2
    pool = RewardModelPool({"a": fakes[0], "b": fakes[1], "c": fakes[2]})
    decisions = [decision([1], 0), decision([0, 2], 1)]  # per prompt: prompt 1 chose a, prompts 0 and 2 chose b
    scores, per_arm = score_decisions(pool, SingleRM(3), decisions, BATCH, PROMPTS, RESPONSES, N, AnswerTask())
    assert [f.batches_seen for f in fakes] == [1, 1, 0]  # c was not chosen: it never runs
    assert fakes[0].asked == [("prompt 1", "p1 r0", "1"), ("prompt 1", "p1 r1", "1")]
    assert fakes[1].asked == [(f"prompt {i}", f"p{i} r{j}", str(i)) for i in (0, 2) for j in range(N)]
    assert torch.equal(scores, torch.tensor([[2.0, 2.0], [3.0, 3.0], [4.0, 4.0]]))
    assert sorted(per_arm) == [0, 1]
    assert torch.isnan(per_arm[0][[0, 2]]).all() and torch.equal(per_arm[0][1], torch.tensor([3.0, 3.0]))
    assert torch.isnan(per_arm[1][1]).all() and torch.equal(per_arm[1][[0, 2]], torch.tensor([[2.0, 2.0], [4.0, 4.0]]))


def test_an_ensemble_decision_runs_each_of_its_rms_once_and_combines_them():
    fakes = [CountingRM(), ScriptedRM()]  # uid + 2, and 0, 1, 2, ... down the batch
    pool = RewardModelPool({"uid": fakes[0], "rank": fakes[1]})
    ensemble = ScoreEnsemble(2)
    scores, per_arm = score_decisions(pool, ensemble, [decision([0, 1, 2], 0, 1)], BATCH, PROMPTS, RESPONSES, N,
                                      AnswerTask())
    assert fakes[0].batches_seen == 1 and fakes[1].calls == 1
    assert torch.equal(per_arm[1], torch.arange(6.0).view(3, N))
    assert torch.equal(scores, ensemble.combine({0: per_arm[0], 1: per_arm[1]}))


@pytest.mark.parametrize(("action", "kind", "scored"), [
    ("raise", "error", False), ("short", "wrong_count", False), ("nan", "nonfinite_scores", True)])
def test_a_faulty_rm_is_returned_as_a_fault_naming_it_not_raised(action, kind, scored):
    pool = RewardModelPool({"fine": CountingRM(), "flaky": ScriptedRM(action)})
    decisions = [decision([0], 0), decision([1, 2], 1)]
    result = score_step(pool, SingleRM(2), decisions, BATCH, PROMPTS, RESPONSES, N, AnswerTask())
    assert isinstance(result.fault, RewardModelError)
    assert (result.fault.name, result.fault.kind) == ("flaky", kind)
    assert (result.scores is not None) == scored  # NaN scores come back with the fault; a raise has none
    again = score_step(pool, SingleRM(2), decisions, BATCH, PROMPTS, RESPONSES, N, AnswerTask())
    assert again.fault is None and torch.isfinite(again.scores).all()  # the script's next call is fine


@pytest.mark.parametrize("on_rm_fault", ["skip", "penalise"])
def test_a_fault_is_counted_and_only_the_arm_that_chose_the_rm_is_penalised(on_rm_fault):
    selector, tracker = RecordingSelector(3), IterationTracker()
    tracker.on_step(0)
    decisions = [decision([0], 0), decision([1], 1), decision([2], 2, 1)]  # the last an ensemble with "flaky"
    fault = RewardModelError("flaky", "error", "CUDA out of memory")
    reason = handle_rm_fault(fault, decisions, ["fine", "flaky", "other"], selector, tracker, on_rm_fault)
    assert reason == "rm_error"
    assert dict(tracker.faults) == {"faults/error": 1, "faults/rm/flaky": 1}
    assert selector.rewards == ([] if on_rm_fault == "skip" else [((1,), 0.0), ((2, 1), 0.0)])


def test_a_fault_on_another_rank_is_counted_without_a_name_or_a_penalty():
    selector, tracker = RecordingSelector(2), IterationTracker()
    nonfinite = RewardModelError("flaky", "nonfinite_scores", "NaN")
    assert handle_rm_fault(nonfinite, [decision([0], 1)], ["fine", "flaky"], selector, tracker, "skip") == \
        "nonfinite_scores"
    assert handle_rm_fault(None, [decision([0], 1)], ["fine", "flaky"], selector, tracker, "penalise") == "rm_error"
    assert dict(tracker.faults) == {"faults/nonfinite_scores": 1, "faults/rm/flaky": 1, "faults/error": 1}
    assert selector.rewards == []
