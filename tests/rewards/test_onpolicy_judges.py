"""On-policy learned judges (laser/rewards/onpolicy_judges.py): trained on the warm-started policy's own
samples. The pairs are the policy's responses, right (as the task grades them) over wrong, in the
configured category shares; held-out questions are never trained on; the cache key follows the policy."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from laser.errors import LaserConfigError
from laser.policy.loading import policy_folder
from laser.policy.policy import Policy
from laser.rewards.onpolicy_judges import (
    judge_folders,
    learned_judges_onpolicy,
    onpolicy_pairs,
    question_pairs,
    sample_policy,
    split_questions,
)
from laser.tasks.arithmetic import Arithmetic

TASK = Arithmetic(num_train=300, num_test=30, categories=["comparison", "maximum", "minimum"])
TINY = {"vocab_size": 512, "hidden_size": 16, "num_layers": 1, "num_heads": 2, "seed": 0}


def policy_like_samples(example, rng: random.Random, n: int = 6) -> list[str]:
    """Responses as the tiny policy gives them: the answer, an operand, junk, with or without a space."""
    pool = [" " + example.answer, example.answer, " " + example.answer + "7", " 0", " 13"]
    pool += [" " + str(example.meta[k]) for k in ("a", "b") if k in example.meta] + [" yes", " no"]
    return [rng.choice(pool) for _ in range(n)]


def sampled_questions(seed: int = 0) -> list[tuple]:
    rng = random.Random(seed)
    return [(e, policy_like_samples(e, rng)) for e in TASK.train_examples()]


def question_of(text: str, sampled):
    """The (example, responses) whose prompt starts `text`."""
    return next((e, rs) for e, rs in sampled if text.startswith(TASK.format_prompt(e)))


def test_each_pair_is_two_of_the_policys_responses_to_one_question_right_over_wrong() -> None:
    sampled = sampled_questions()
    pairs = onpolicy_pairs(TASK, sampled, "maximum", 0.9, 2, random.Random(0))
    assert len(pairs) > 100
    for chosen, rejected in pairs:
        example, responses = question_of(chosen, sampled)
        prompt = TASK.format_prompt(example)
        assert rejected.startswith(prompt)
        right, wrong = chosen[len(prompt):], rejected[len(prompt):]
        assert right in responses and wrong in responses  # the policy's own samples, not made-up answers
        assert TASK.is_correct(right, example) and not TASK.is_correct(wrong, example)


def test_a_question_gives_at_most_its_limit_of_distinct_pairs_and_none_when_all_agree() -> None:
    example = next(e for e in TASK.train_examples() if e.category == "minimum")
    right, wrong = " " + example.answer, " 99"
    assert question_pairs(TASK, example, [right] * 5, 3, random.Random(0)) == []
    assert question_pairs(TASK, example, [wrong] * 5, 3, random.Random(0)) == []
    pairs = question_pairs(TASK, example, [right, right, wrong, " 98", " 97"], 2, random.Random(0))
    assert len(pairs) == 2 and len(set(pairs)) == 2
    assert len(question_pairs(TASK, example, [right, wrong, " 98", " 97"], 10, random.Random(0))) == 3


@pytest.mark.parametrize("own_share", [1.0, 0.9, 0.5, 0.0])
def test_own_share_is_the_share_of_pairs_from_the_judges_category(own_share: float) -> None:
    sampled = sampled_questions(1)
    pairs = onpolicy_pairs(TASK, sampled, "comparison", own_share, 2, random.Random(1))
    own = sum(question_of(chosen, sampled)[0].category == "comparison" for chosen, _ in pairs)
    assert own / len(pairs) == pytest.approx(own_share, abs=1.5 / len(pairs))
    assert len(pairs) > 50


def test_held_out_questions_are_the_last_of_each_category_and_never_in_training() -> None:
    train, held = split_questions(TASK.train_examples(), 0.2)
    assert not {e.uid for e in train} & {e.uid for e in held}
    for category in TASK.categories:
        mine = [e for e in TASK.train_examples() if e.category == category]
        assert [e.uid for e in held if e.category == category] == [e.uid for e in mine[-20:]]
    train, held = split_questions(TASK.train_examples(), 0.25, limit=8)
    assert len(train) == 3 * 6 and len(held) == 3 * 2


def test_samples_come_from_the_policy_n_per_question_in_order(cache_dir: Path) -> None:
    """With temperature -> 0 the n samples of a question are its greedy answer, question by question."""
    policy = Policy(policy_folder(task=TASK, tiny=TINY, cache_dir=str(cache_dir)), max_new_tokens=3,
                    temperature=1e-6, max_prompt_tokens=64)
    examples = TASK.train_examples()[:5]
    responses = sample_policy(policy, TASK, examples, 3, prompts_per_call=2)
    greedy = policy.sample(policy.encode([TASK.format_prompt(e) for e in examples]), 1, greedy=True).texts
    assert [len(r) for r in responses] == [3] * 5
    assert responses == [[g] * 3 for g in greedy]


def test_the_cache_key_follows_the_policy_its_warm_start_and_its_sampling(cache_dir: Path) -> None:
    untrained = policy_folder(task=TASK, tiny=TINY, cache_dir=str(cache_dir))
    warm = {"steps": 2, "lr": 1e-3, "batch_size": 4, "seed": 0}
    warm_2 = policy_folder(task=TASK, tiny=TINY, warm_start=warm, cache_dir=str(cache_dir))
    warm_3 = policy_folder(task=TASK, tiny=TINY, warm_start={**warm, "steps": 3}, cache_dir=str(cache_dir))
    sampling, knobs = {"temperature": 1.0}, [8, 2, 0.2, 0.9, 1000]
    keys = [judge_folders(TASK, model, sampling, "/c", knobs)["maximum"] for model in (untrained, warm_2, warm_3)]
    assert len(set(keys)) == 3
    assert judge_folders(TASK, warm_2, sampling, "/c", knobs)["maximum"] == keys[1]  # same inputs, same folder
    assert judge_folders(TASK, warm_2, {"temperature": 0.8}, "/c", knobs)["maximum"] != keys[1]
    assert judge_folders(TASK, warm_2, sampling, "/c", [8, 2, 0.2, 0.5, 1000])["maximum"] != keys[1]
    assert len(set(judge_folders(TASK, warm_2, sampling, "/c", knobs).values())) == 3  # one per category


@pytest.mark.parametrize(("overrides", "named"), [({"own_share": 1.5}, "own_share=1.5"),
                                                  ({"held_out_share": 1.0}, "held_out_share=1.0"),
                                                  ({"samples_per_question": 1}, "samples_per_question=1"),
                                                  ({"question_limit": 0}, "question_limit=0")])
def test_bad_knobs_are_refused_in_one_line(tmp_path: Path, overrides: dict, named: str) -> None:
    with pytest.raises(LaserConfigError, match=named):
        learned_judges_onpolicy(TASK, {"tiny": TINY}, str(tmp_path), **overrides)
