"""RMs without weights: the verifier, the noisy wrapper, and the overlap RMs of long-context QA."""

from __future__ import annotations

import pytest
import torch
from rm_fakes import CountingRM, make_batch

from laser.errors import LaserConfigError
from laser.rewards.base import ScoringBatch
from laser.rewards.noisy import NoisyRM
from laser.rewards.overlap import PassageOverlapRM, QuestionOverlapRM
from laser.rewards.verifier import VerifierRM
from laser.tasks.base import Example

# ---- verifier --------------------------------------------------------------------------------------------


def test_verifier_scores_correct_wrong_and_missing_answers():
    batch = make_batch(["addition"] * 3, ["so the answer: 5", "answer: 6", "no idea"])
    assert VerifierRM().score(batch).tolist() == [1.0, 0.0, 0.0]
    assert VerifierRM(partial_credit_for_format=0.25).score(batch).tolist() == [1.0, 0.25, 0.0]


def test_verifier_without_task_raises():
    batch = make_batch(["addition"])
    batch.task = None
    with pytest.raises(ValueError, match="needs the task"):
        VerifierRM().score(batch)


# ---- noisy wrapper ---------------------------------------------------------------------------------------


def test_noisy_with_zero_corruption_returns_base_scores_exactly():
    batch = make_batch(["addition", "comparison"] * 5)
    assert torch.equal(NoisyRM(CountingRM()).score(batch), CountingRM().score(batch).float())


def test_full_corruption_never_calls_base_and_is_uniform_noise():
    base = CountingRM()
    scores = NoisyRM(base, corrupt_prob=1.0, seed=3).score(make_batch(["addition"] * 50))
    assert base.items_seen == 0 and base.batches_seen == 0
    assert scores.min() >= 0.0 and scores.max() < 1.0  # base scores are all >= 2
    assert scores.unique().numel() == 50


def test_per_category_corruption_applies_only_to_that_category():
    batch = make_batch(["addition", "comparison"] * 1000)
    base = CountingRM()
    scores = NoisyRM(base, corrupt_prob={"addition": 0.3}, seed=0).score(batch)
    corrupted = scores < 1.0  # base scores are >= 2
    assert not corrupted[1::2].any()  # comparison: missing from the dict and no "default" -> 0
    assert abs(corrupted[0::2].float().mean().item() - 0.3) < 0.05
    assert base.items_seen == 2000 - corrupted.sum().item()  # the base only sees kept items
    # Kept items keep their own base score (the sub-batch is mapped back to the right positions).
    assert torch.equal(scores[~corrupted], CountingRM().score(batch).float()[~corrupted])
    defaulted = NoisyRM(CountingRM(), corrupt_prob={"addition": 0.0, "default": 1.0}).score(batch)
    assert (defaulted[1::2] < 1.0).all() and (defaulted[0::2] >= 2.0).all()


def test_gaussian_noise_has_the_requested_std():
    batch = make_batch(["addition"] * 2000)
    noisy = NoisyRM(CountingRM(), noise_std=0.1, seed=1).score(batch)
    assert abs((noisy - CountingRM().score(batch).float()).std().item() - 0.1) < 0.01


def test_noisy_is_seeded_and_state_dict_continues_the_stream():
    batch = make_batch(["addition", "comparison"] * 20)
    first, second = (NoisyRM(CountingRM(), corrupt_prob=0.5, noise_std=0.1, seed=7) for _ in range(2))
    assert torch.equal(first.score(batch), second.score(batch))
    other = NoisyRM(CountingRM(), corrupt_prob=0.5, noise_std=0.1, seed=8).score(batch)
    assert not torch.equal(other, NoisyRM(CountingRM(), corrupt_prob=0.5, noise_std=0.1, seed=7).score(batch))
    state = first.state_dict()
    expected = first.score(batch)
    resumed = NoisyRM(CountingRM(), corrupt_prob=0.5, noise_std=0.1, seed=0)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.score(batch), expected)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"corrupt_prob": 1.5}, "1.5"),
        ({"corrupt_prob": {"addition": -0.1}}, "'addition'.*-0.1"),
        ({"noise_std": -2.0}, "-2.0"),
    ],
)
def test_noisy_rejects_bad_values_naming_them(kwargs, needle):
    with pytest.raises(LaserConfigError, match=needle):
        NoisyRM(CountingRM(), **kwargs)


# ---- overlap RMs (long-context QA) -----------------------------------------------------------------------


def _example(passage: str, question: str) -> Example:
    return Example(uid="x", question="prompt", answer="a", meta={"passage": passage, "question": question})


def test_passage_and_question_overlap_rms_by_hand() -> None:
    example = _example("Paris is the capital of France.", "Which is older, Paris or Rome?")
    answers = ["Paris, France", "The Paris of Spain", "", "Rome"]
    batch = ScoringBatch(prompts=["p"] * 4, responses=answers, examples=[example] * 4)
    passage = PassageOverlapRM(length_penalty=0.01).score(batch)
    # paris+france both grounded: 1 - 0.02; "paris of spain": 2/3 grounded - 0.03; empty: 0; rome: 0 - 0.01.
    assert torch.allclose(passage, torch.tensor([0.98, 2 / 3 - 0.03, 0.0, -0.01]))
    question = QuestionOverlapRM(length_penalty=0.0).score(batch)
    assert torch.allclose(question, torch.tensor([0.5, 1 / 3, 0.0, 1.0]))
    # Without meta the prompt is the reference.
    bare = Example(uid="y", question="q", answer="a")
    fallback = PassageOverlapRM(length_penalty=0.0).score(
        ScoringBatch(prompts=["Rome is old"], responses=["rome"], examples=[bare]))
    assert fallback.tolist() == [1.0]
    with pytest.raises(LaserConfigError, match="length_penalty"):
        PassageOverlapRM(length_penalty=-1)
