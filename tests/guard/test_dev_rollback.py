"""The dev-rollback guard's maths (laser/guard/dev_rollback.py): which prompts it holds out, which
categories fell, and what it keeps, undoes, rests and penalises, iteration by iteration."""

from __future__ import annotations

import pytest
import torch

from laser.errors import LaserConfigError
from laser.guard.dev_rollback import DevRollback, dev_split, fallen_categories, majority_category
from laser.selection.base import Selection
from laser.tasks.base import Example


def examples(counts: dict[str, int]) -> list[Example]:
    return [Example(f"{c}{i}", f"{c} question {i}", "1", category=c) for c, n in counts.items() for i in range(n)]


def test_dev_split_takes_the_last_of_each_category_and_at_most_half():
    train = examples({"maximum": 10, "minimum": 4})
    dev = dev_split(train, per_category=3)
    assert [e.uid for e in dev] == ["maximum7", "maximum8", "maximum9", "minimum2", "minimum3"]
    assert dev_split(train, per_category=3) == dev  # the same every run: no RNG


def test_fallen_categories_are_those_below_the_best_by_more_than_max_drop():
    best = {"comparison": 0.50, "maximum": 0.70, "minimum": 0.60}
    now = {"comparison": 0.80, "maximum": 0.60, "minimum": 0.55}
    assert fallen_categories(best, now, max_drop=0.05) == ["maximum"]  # minimum fell exactly 0.05: kept
    assert fallen_categories(best, now, max_drop=0.2) == []
    assert fallen_categories(best, now, max_drop=-0.1) == ["maximum", "minimum"]  # negative: demand a gain


def test_an_undo_rests_the_fallen_categories_and_penalises_only_their_decisions():
    guard = DevRollback(dev_per_category=2, max_drop=0.05, penalty=0.0, cooldown=2)
    guard.baseline({"maximum": 0.7, "minimum": 0.6})
    guard.begin({"lora_B": torch.zeros(2)})
    batch_max, batch_min = examples({"maximum": 2}), examples({"minimum": 2})
    chose = [Selection((0,)), Selection((1,)), Selection((2,))]
    guard.note(batch_max, [0, 1], chose[0], torch.ones(3))
    guard.note(batch_min, [0, 1], chose[1], torch.zeros(3))
    guard.note(batch_max, [0, 1], chose[2], torch.ones(3))
    verdict = guard.judge({"maximum": 0.5, "minimum": 0.65})
    assert verdict.rolled_back and verdict.fallen == ["maximum"]
    assert [s for s, _ in verdict.penalised] == [chose[0], chose[2]]  # the minimum decision is not blamed
    assert guard.best_accuracy == {"maximum": 0.7, "minimum": 0.6}  # an undone policy sets no best
    assert guard.rests(batch_max) and not guard.rests(batch_min)
    guard.begin({})
    assert not guard.judge({"maximum": 0.68, "minimum": 0.8}).rolled_back  # within max_drop of the best: kept
    assert guard.best_accuracy == {"maximum": 0.7, "minimum": 0.8}  # the best so far, per category
    assert guard.rests(batch_max)  # cooldown 2: rests for this check and the next
    assert guard.judge({"maximum": 0.7, "minimum": 0.74}).rolled_back  # 0.06 below minimum's best
    assert guard.rollbacks == 2 and guard.rests(batch_min) and not guard.rests(batch_max)
    record = guard.iteration_metrics()
    assert record == {"guard/checks": 3.0, "guard/rolled_back": 2.0, "guard/penalised": 2.0, "guard/fell/maximum": 1.0,
                      "guard/fell/minimum": 1.0, "dev/accuracy/maximum": 0.7, "dev/accuracy/minimum": 0.74,
                      "guard/rollbacks": 2.0}
    assert guard.iteration_metrics() == {"guard/rollbacks": 2.0}  # the next iteration starts a new tally


def test_checks_fall_due_every_check_every_steps_but_the_iterations_last():
    assert [s for s in range(1, 13) if DevRollback(check_every=4).due(s, 12)] == [4, 8]
    assert not any(DevRollback().due(s, 12) for s in range(1, 13))  # null: the iteration's end only


def test_without_a_penalty_the_selector_is_not_told_and_cooldown_zero_rests_nothing():
    guard = DevRollback(penalty=None, cooldown=0)
    guard.baseline({"": 0.6})
    guard.begin({})
    guard.note(examples({"": 1}), [0], Selection((0,)), torch.ones(1))
    verdict = guard.judge({"": 0.3})
    assert verdict.rolled_back and verdict.penalised == [] and guard.resting == {}
    assert guard.iteration_metrics()["dev/accuracy"] == 0.3  # a task without categories: overall accuracy


def test_state_round_trips_and_judging_needs_a_baseline():
    guard = DevRollback(cooldown=3)
    with pytest.raises(RuntimeError, match="baseline"):
        guard.judge({"a": 0.1})
    guard.baseline({"a": 0.9})
    guard.begin({})
    guard.judge({"a": 0.1})
    restored = DevRollback(cooldown=3)
    restored.load_state_dict(guard.state_dict())
    assert restored.state_dict() == guard.state_dict() == {"best_accuracy": {"a": 0.9}, "resting": {"a": 3},
                                                          "rollbacks": 1}


@pytest.mark.parametrize("knob, value", [("dev_per_category", 0), ("max_drop", 1.5), ("penalty", 2.0),
                                         ("cooldown", -1), ("check_every", 0), ("eval_batch_size", 0)])
def test_a_bad_knob_is_one_line_naming_it(knob, value):
    with pytest.raises(LaserConfigError, match=rf"guard\.{knob}={value!r}"):
        DevRollback(**{knob: value})


def test_majority_category_breaks_ties_by_name():
    assert majority_category(examples({"minimum": 2, "maximum": 2})) == "maximum"
    assert majority_category([]) == ""
