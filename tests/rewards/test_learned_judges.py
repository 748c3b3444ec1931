"""Learned judges (laser/rewards/learned_judges.py): small classifiers trained locally, mostly on one
category each. The pairs they learn from are graded by the task, the loss is Bradley-Terry, a judge
learns its own category, and a trained judge is cached."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from laser.errors import LaserConfigError
from laser.rewards.learned_judges import (
    bradley_terry_loss,
    candidate_response,
    learned_judges,
    preference_pairs,
    train_judge,
)
from laser.tasks.arithmetic import Arithmetic

TASK = Arithmetic(num_train=600, num_test=150, categories=["comparison", "maximum", "minimum"])


def example_of(prompt_and_response: str):
    """The task example whose prompt starts the text."""
    return next(e for e in TASK.train_examples() if prompt_and_response.startswith(TASK.format_prompt(e)))


def test_every_pair_is_a_right_and_a_wrong_response_as_the_task_grades_them() -> None:
    pairs = preference_pairs(TASK, "maximum", 0.5, 200, random.Random(0), TASK.train_examples())
    assert len(pairs) == 200
    for chosen, rejected in pairs:
        example = example_of(chosen)
        assert rejected.startswith(TASK.format_prompt(example))
        prompt = TASK.format_prompt(example)
        assert TASK.is_correct(chosen[len(prompt):], example)
        assert not TASK.is_correct(rejected[len(prompt):], example)


@pytest.mark.parametrize(("own_share", "expected"), [(1.0, (1.0, 1.0)), (0.0, (0.0, 0.0)), (0.8, (0.72, 0.88))])
def test_own_share_is_the_share_of_pairs_from_the_judges_category(own_share: float, expected) -> None:
    pairs = preference_pairs(TASK, "minimum", own_share, 400, random.Random(1), TASK.train_examples())
    share = sum(example_of(chosen).category == "minimum" for chosen, _ in pairs) / len(pairs)
    assert expected[0] <= share <= expected[1]


def test_candidates_vary_as_a_small_policys_samples_do() -> None:
    """Missing spaces, trailing digits and wrong operands all occur, so a judge cannot learn one format."""
    example = next(e for e in TASK.train_examples() if e.category == "maximum")
    rng = random.Random(2)
    responses = [candidate_response(example, rng, TASK.max_operand) for _ in range(500)]
    other = str(min(example.meta["a"], example.meta["b"]))
    assert any(not r.startswith(" ") for r in responses)
    assert any(r.strip().startswith(example.answer) and not TASK.is_correct(r, example) for r in responses)
    assert any(r.strip() == other for r in responses)
    assert 0.3 < sum(TASK.is_correct(r, example) for r in responses) / 500 < 0.6


def test_bradley_terry_loss() -> None:
    assert bradley_terry_loss(torch.zeros(3), torch.zeros(3)).item() == pytest.approx(math.log(2))
    chosen, rejected = torch.tensor([2.0, -1.0]), torch.tensor([0.0, 0.5])
    expected = -(torch.sigmoid(torch.tensor(2.0)).log() + torch.sigmoid(torch.tensor(-1.5)).log()) / 2
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(expected.item())
    assert bradley_terry_loss(chosen + 1, rejected).item() < bradley_terry_loss(chosen, rejected).item()


@pytest.mark.slow  # starts processes or trains for seconds: the quick suite stays under 5 minutes
def test_a_judge_learns_its_category_and_is_cached(tmp_path: Path) -> None:
    """150 steps on comparison pairs: well above where one step leaves it, and a second call reuses the
    folder without training."""
    folder = Path(train_judge(TASK, "comparison", str(tmp_path), own_share=1.0, train_steps=150))
    made = json.loads((folder / "training.json").read_text())
    assert made["category"] == "comparison" and made["train_steps"] == 150
    barely = Path(train_judge(TASK, "comparison", str(tmp_path), own_share=1.0, train_steps=1))
    untrained = json.loads((barely / "training.json").read_text())["test_pair_accuracy"]["comparison"]
    assert made["test_pair_accuracy"]["comparison"] >= max(0.75, untrained + 0.08)  # measured 0.85 vs 0.70
    before = (folder / "model.safetensors").stat().st_mtime_ns
    assert train_judge(TASK, "comparison", str(tmp_path), own_share=1.0, train_steps=150) == str(folder)
    assert (folder / "model.safetensors").stat().st_mtime_ns == before


def test_the_pool_has_one_judge_per_category_then_the_untrained_classifier(tmp_path: Path) -> None:
    pool = learned_judges(TASK, str(tmp_path), train_steps=2)
    assert pool.names == ["comparison_judge", "maximum_judge", "minimum_judge", "untrained_classifier"]


@pytest.mark.parametrize(("overrides", "named"), [({"own_share": 1.5}, "own_share=1.5"),
                                                  ({"train_steps": 0}, "train_steps=0")])
def test_bad_knobs_are_refused_in_one_line(tmp_path: Path, overrides: dict, named: str) -> None:
    with pytest.raises(LaserConfigError, match=named):
        learned_judges(TASK, str(tmp_path), **overrides)


def test_a_task_without_categories_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LaserConfigError, match="2 or more categories"):
        learned_judges(Arithmetic(num_train=10, num_test=4, categories=["comparison"]), str(tmp_path))
