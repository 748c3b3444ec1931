"""The category-judges pool: one judge per task category (the verifier there, noise elsewhere) plus a
pure-noise arm, for whatever mix of categories the task has."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import compose_config

from laser.config.instantiate import instantiate
from laser.errors import LaserConfigError
from laser.rewards.base import ScoringBatch
from laser.rewards.category_judges import arm_seed, category_judges
from laser.rewards.verifier import VerifierRM
from laser.tasks.arithmetic import CATEGORIES, Arithmetic

TASK = Arithmetic(num_train=10, num_test=1000, categories=list(CATEGORIES))  # 200 test questions per category


def batch_of(category: str) -> ScoringBatch:
    """Every test question of `category`, answered right and wrong alternately."""
    examples = [e for e in TASK.test_examples() if e.category == category]
    def wrong(answer: str) -> str:
        return {"yes": " no", "no": " yes"}.get(answer) or f" {int(answer) + 1}"

    responses = [e.target if i % 2 else wrong(e.answer) for i, e in enumerate(examples)]
    return ScoringBatch([TASK.format_prompt(e) for e in examples], responses, examples, TASK)


def is_noise(scores: torch.Tensor) -> bool:
    """Uniform(0, 1) draws: never exactly the verifier's 0 or 1, and spread over the interval."""
    return bool(((scores > 0) & (scores < 1)).all()) and 0.4 < scores.mean().item() < 0.6 and scores.std() > 0.25


@pytest.mark.parametrize("category", CATEGORIES)
def test_each_judge_is_the_verifier_on_its_category_and_noise_elsewhere(category: str) -> None:
    pool = category_judges(CATEGORIES, reliable_corrupt_prob=0.05, seed=3)
    judge = pool.names.index(f"{category}_judge")
    for other in CATEGORIES:
        batch = batch_of(other)
        scores = pool.score([judge], batch)[judge]
        if other == category:
            exact = VerifierRM().score(batch)
            assert set(exact.tolist()) == {0.0, 1.0}  # the batch has right and wrong answers
            assert (scores != exact).float().mean() < 0.1  # corrupted ~5% of the time
            assert (scores == exact).float().mean() > 0.9
        else:
            assert is_noise(scores), other
    noise = pool.names.index("noise")
    assert all(is_noise(pool.score([noise], batch_of(c))[noise]) for c in CATEGORIES)


def test_a_judge_with_no_corruption_is_exactly_the_verifier_on_its_category() -> None:
    pool = category_judges(["parity", "minimum"], reliable_corrupt_prob=0.0)
    batch = batch_of("minimum")
    assert torch.equal(pool.score([1], batch)[1], VerifierRM().score(batch))


def test_arms_and_their_seeds_follow_the_categories() -> None:
    pool = category_judges(["maximum", "parity"], seed=7)
    assert pool.names == ["maximum_judge", "parity_judge", "noise"]
    seeds = [pool[arm].seed for arm in range(len(pool))]
    assert len(set(seeds)) == 3 and seeds[1] == arm_seed(7, "parity_judge")
    assert category_judges(["parity"], seed=7)[0].seed == seeds[1]  # the same judge, whatever the mix
    assert category_judges(["parity"], seed=8)[0].seed != seeds[1]


@pytest.mark.parametrize("mix", [None, ["comparison", "maximum", "parity"], ["minimum"]])
def test_the_yaml_builds_one_judge_per_category_of_the_task(mix: list[str] | None) -> None:
    overrides = ["rm_pool=category_judges"] + ([f"task.categories=[{','.join(mix)}]"] if mix else [])
    cfg = compose_config(overrides)
    categories = mix or ["comparison", "maximum", "minimum"]  # the default task's
    assert list(cfg.rm_pool.categories) == categories
    pool = instantiate(cfg.rm_pool, _convert_="all")
    assert pool.names == [f"{c}_judge" for c in categories] + ["noise"]


def test_the_oracle_bandit_adds_its_arm_after_the_judges() -> None:
    cfg = compose_config(["rm_pool=category_judges", "bandit=oracle", "task.categories=[maximum,parity]"])
    pool = instantiate(cfg.rm_pool, _convert_="all")
    assert pool.names == ["maximum_judge", "parity_judge", "noise", "oracle"]


@pytest.mark.parametrize("categories", [["parity", "parity"], ["", "parity"]])
def test_categories_that_cannot_be_judged_apart_are_refused(categories: list[str]) -> None:
    with pytest.raises(LaserConfigError, match="distinct, non-empty task categories"):
        category_judges(categories)


@pytest.mark.parametrize("categories", [None, [], [""]])
def test_a_task_without_categories_gets_one_judge_and_noise(categories) -> None:
    """GSM8K and friends have no categories: the default pool is then the verifier (corrupted at the
    reliable rate) and pure noise, so `task=gsm8k` runs with the default rm_pool."""
    pool = category_judges(categories, reliable_corrupt_prob=0.0)
    assert pool.names == ["judge", "noise"]
    example = TASK.test_examples()[0]
    plain = dataclasses.replace(example, category="")
    batch = ScoringBatch(["q"] * 2, [example.target, " 9999"], [plain, plain], TASK)
    assert pool.score([0], batch)[0].tolist() == [1.0, 0.0]
    cfg = compose_config(["task=gsm8k"])
    assert cfg.rm_pool.categories is None


def test_an_extra_arm_may_not_take_a_judges_name() -> None:
    with pytest.raises(LaserConfigError, match="noise"):
        category_judges(["parity"], models={"noise": VerifierRM()})


def test_a_rule_verifier_applies_its_own_rule_to_other_categories() -> None:
    """On "Which is smaller, a or b?" the maximum rule prefers the larger number, the minimum rule the
    smaller, the comparison rule a yes/no by a > b; a parity question has no two operands: all 0."""
    from laser.rewards.rule_verifier import RuleVerifierRM

    question = next(e for e in TASK.test_examples() if e.category == "minimum")
    a, b = question.meta["a"], question.meta["b"]
    responses = [f" {min(a, b)}", f" {max(a, b)}", " yes", " no"]
    batch = ScoringBatch([TASK.format_prompt(question)] * 4, responses, [question] * 4, TASK)
    score = {rule: RuleVerifierRM(rule).score(batch).tolist() for rule in ("minimum", "maximum", "comparison")}
    assert score["minimum"] == [1.0, 0.0, 0.0, 0.0] and score["maximum"] == [0.0, 1.0, 0.0, 0.0]
    assert score["comparison"] == ([0.0, 0.0, 1.0, 0.0] if a > b else [0.0, 0.0, 0.0, 1.0])
    parity = next(e for e in TASK.test_examples() if e.category == "parity")
    assert RuleVerifierRM("maximum").score(ScoringBatch(["q"], [" 3"], [parity], TASK)).tolist() == [0.0]
    with pytest.raises(LaserConfigError, match="rule='division'"):
        RuleVerifierRM("division")


def test_the_conflicting_pool_composes_and_its_judges_conflict() -> None:
    cfg = compose_config(["rm_pool=category_judges_conflicting", "task.categories=[comparison,maximum,minimum]",
                          "rm_pool.reliable_corrupt_prob=0.0"])
    pool = instantiate(cfg.rm_pool, _convert_="all")
    assert pool.names == ["comparison_judge", "maximum_judge", "minimum_judge", "noise"]
    examples = [e for e in TASK.test_examples() if e.category == "minimum"]
    responses = [f" {min(e.meta['a'], e.meta['b']) if i % 2 else max(e.meta['a'], e.meta['b'])}"
                 for i, e in enumerate(examples)]  # right and wrong (the other number) alternately
    batch = ScoringBatch([TASK.format_prompt(e) for e in examples], responses, examples, TASK)
    scores = pool.score(range(4), batch)
    assert torch.equal(scores[1], 1.0 - scores[2])  # on "which is smaller" the two numeric judges disagree exactly
    assert torch.equal(scores[2], VerifierRM().score(batch))
    with pytest.raises(LaserConfigError, match="off_category='nowhere'"):
        category_judges(["minimum"], off_category="nowhere")
