"""The supervised warm start: to a fixed step count, or to a target greedy accuracy per category (the
weighting and stopping rule alone, the held-out split, the batched greedy check, and a real tiny run)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from laser.errors import LaserConfigError
from laser.hf import load_causal_lm, load_tokenizer
from laser.policy.warm_start import (
    REPLAY_WEIGHT,
    REPORT_FILE,
    CompetenceTarget,
    greedy_accuracy,
    hold_out,
    sampling_weights,
    target_reached,
    warm_start,
)
from laser.tasks.arithmetic import Arithmetic
from laser.tasks.base import Example
from laser.tiny import build_tiny_causal_lm

TASK = Arithmetic(num_train=120, num_test=4, categories=["comparison", "parity"])


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> str:
    return build_tiny_causal_lm(str(tmp_path_factory.mktemp("models")), task=TASK, hidden_size=32, num_layers=1)


def examples(counts: dict[str, int]) -> list[Example]:
    return [Example(uid=f"{c}-{i}", question=f"{c} {i}?", answer="1", category=c)
            for c, n in counts.items() for i in range(n)]


def test_categories_at_the_target_are_replayed_and_training_stops_when_all_are_there() -> None:
    accuracies = {"comparison": 0.6, "maximum": 0.59, "parity": 1.0}
    assert sampling_weights(accuracies, 0.6) == {"comparison": REPLAY_WEIGHT, "maximum": 1.0, "parity": REPLAY_WEIGHT}
    assert REPLAY_WEIGHT == 0.15 and sampling_weights({"a": 0.9}, 0.5, replay_weight=0.3) == {"a": 0.3}
    assert not target_reached(accuracies, 0.6)
    assert target_reached({**accuracies, "maximum": 0.6}, 0.6) and target_reached({"": 0.0}, 0.0)


def test_the_schedule_checks_every_n_steps_reweights_draws_and_reports() -> None:
    train = examples({"a": 500, "b": 500})
    measured = iter([{"a": 0.7, "b": 0.1}, {"a": 0.8, "b": 0.65}])
    schedule = CompetenceTarget(train, {"a": train[:2], "b": train[-2:]}, 0.6, check_every=3, batch_size=1000,
                                rng=random.Random(0), measure=lambda: next(measured))
    share_a = sum(train[i].category == "a" for i in schedule.draw_batch()) / 1000
    assert 0.45 < share_a < 0.55  # all below the target: every example equally likely
    assert not schedule.after_step(1) and not schedule.after_step(2) and not schedule.checks  # no check yet
    assert not schedule.after_step(3)  # a reached, b not
    share_a = sum(train[i].category == "a" for i in schedule.draw_batch()) / 1000
    assert abs(share_a - REPLAY_WEIGHT / (1 + REPLAY_WEIGHT)) < 0.04  # a is only replayed
    assert schedule.after_step(6)  # both there: stop
    report = schedule.report(steps_done=6, max_steps=100)
    assert report["steps"] == 6 and report["reached"] and report["final"] == {"a": 0.8, "b": 0.65}
    assert [c["step"] for c in report["checks"]] == [3, 6] and report["check_examples"] == {"a": 2, "b": 2}
    assert report["checks"][0]["next_weights"] == {"a": REPLAY_WEIGHT, "b": 1.0}


def test_the_report_measures_once_more_when_training_ends_between_checks() -> None:
    schedule = CompetenceTarget(examples({"": 10}), {"": []}, 0.9, check_every=4, batch_size=2,
                                rng=random.Random(0), measure=lambda: {"": 0.5})
    assert not schedule.after_step(4)
    report = schedule.report(steps_done=5, max_steps=5)
    assert [c["step"] for c in report["checks"]] == [4, 5] and not report["reached"]


def test_hold_out_keeps_back_the_last_examples_of_each_category() -> None:
    data = examples({"a": 5, "b": 4, "": 3})
    train, held = hold_out(data, 2)
    assert {c: [e.uid for e in held[c]] for c in held} == {"": ["-1", "-2"], "a": ["a-3", "a-4"], "b": ["b-2", "b-3"]}
    assert [e.uid for e in train] == ["a-0", "a-1", "a-2", "b-0", "b-1", "-0"]


def test_hold_out_holds_back_less_from_a_category_too_small_for_the_check_and_warns(
        caplog: pytest.LogCaptureFixture) -> None:
    """A small run (task.train_limit below check_examples) still warm-starts: a quarter of a small category
    is held back (at least one), a one-example category is trained on and not checked, with one warning each."""
    data = examples({"a": 9, "b": 3, "c": 1})
    with caplog.at_level("WARNING", logger="laser.policy.warm_start"):
        train, held = hold_out(data, 64)
    assert {c: [e.uid for e in held[c]] for c in held} == {"a": ["a-7", "a-8"], "b": ["b-2"]}
    assert [e.uid for e in train] == ["a-0", "a-1", "a-2", "a-3", "a-4", "a-5", "a-6", "b-0", "b-1", "c-0"]
    assert len([r for r in caplog.records if "check_examples=64" in r.getMessage()]) == 3
    schedule = CompetenceTarget(train, held, 0.5, check_every=2, batch_size=4, rng=random.Random(0),
                                measure=lambda: {"a": 1.0, "b": 0.0})
    assert {train[i].category for i in schedule.draw_batch() * 10} <= {"a", "b", "c"}  # c still drawn, unchecked


def test_greedy_accuracy_matches_unbatched_generation_and_leaves_model_and_tokenizer_as_they_were(
        model_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer, model = load_tokenizer(model_path), load_causal_lm(model_path, "float32")
    side = tokenizer.padding_side
    held = {c: [e for e in TASK.test_examples() if e.category == c] for c in TASK.categories}  # 2 each
    lengths = {len(tokenizer(TASK.format_prompt(e))["input_ids"]) for e in held["comparison"]}
    assert len(lengths) == 2  # prompts of different lengths: the batch is padded
    graded: list[str] = []
    monkeypatch.setattr(TASK, "is_correct", lambda text, e: graded.append(text) or e.category == "parity")
    model.train()
    assert greedy_accuracy(model, tokenizer, TASK, held) == {"comparison": 0.0, "parity": 1.0}
    assert model.training and tokenizer.padding_side == side
    model.eval()
    expected = []
    for example in held["comparison"] + held["parity"]:  # one at a time: no padding at all
        ids = tokenizer(TASK.format_prompt(example), return_tensors="pt")["input_ids"]
        new_tokens = len(tokenizer(example.target)["input_ids"]) + 2
        out = model.generate(input_ids=ids, max_new_tokens=new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        expected.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
    assert graded == expected


def test_a_warm_start_to_a_target_stops_at_the_first_check_that_reaches_it_and_writes_its_checks(
        model_path: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    knobs = dict(steps=6, batch_size=8, check_every=2, check_examples=8)
    reached = Path(warm_start(model_path, TASK, str(tmp_path), target_accuracy=0.0, **knobs))
    report = json.loads((reached / REPORT_FILE).read_text())
    assert report["steps"] == 2 and report["reached"] and len(report["checks"]) == 1
    assert set(report["final"]) == {"comparison", "parity"} and report["check_examples"] == {"comparison": 8, "parity": 8}
    assert report["final"] == report["checks"][0]["accuracy"]
    unreachable = Path(warm_start(model_path, TASK, str(tmp_path), target_accuracy=1.0, **knobs))
    report = json.loads((unreachable / REPORT_FILE).read_text())
    assert report["steps"] == 6 and not report["reached"] and [c["step"] for c in report["checks"]] == [2, 4, 6]
    fixed = Path(warm_start(model_path, TASK, str(tmp_path), target_accuracy=None, **knobs))
    assert not (fixed / REPORT_FILE).exists() and len({reached, unreachable, fixed}) == 3
    # without a target the check knobs change nothing, not even the folder
    assert Path(warm_start(model_path, TASK, str(tmp_path), steps=6, batch_size=8, target_accuracy=None)) == fixed
    with caplog.at_level("INFO", logger="laser.policy.warm_start"):
        assert Path(warm_start(model_path, TASK, str(tmp_path), target_accuracy=0.0, **knobs)) == reached
    assert "reusing" in caplog.text and "greedy accuracy on held-out train examples comparison" in caplog.text


def test_a_fixed_warm_start_trains_exactly_as_before(model_path: str, tmp_path: Path) -> None:
    """The fixed path draws `rng.randrange(len(examples))` per batch item, as it always did: the weights
    equal those of that loop written out by hand."""
    from laser.policy.warm_start import sft_batch, sft_tokens

    folder = warm_start(model_path, TASK, str(tmp_path), steps=3, batch_size=4, lr=1e-3)
    tokenizer, model = load_tokenizer(model_path), load_causal_lm(model_path, "float32")
    model.train()
    train, rng = TASK.train_examples(), random.Random(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=1e-3, total_steps=3, pct_start=0.1)
        for _ in range(3):
            chosen = [train[rng.randrange(len(train))] for _ in range(4)]
            pairs = [sft_tokens(tokenizer, TASK.format_prompt(e), e.target, 512) for e in chosen]
            model(**sft_batch(tokenizer, pairs)).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            optimiser.zero_grad(set_to_none=True)
    trained = load_causal_lm(folder, "float32")
    for (name, expected), actual in zip(model.state_dict().items(), trained.state_dict().values(), strict=True):
        assert torch.equal(expected, actual), name


def test_bad_target_knobs_are_one_line_config_errors(model_path: str, tmp_path: Path) -> None:
    for knobs, message in (({"target_accuracy": 1.5}, "target_accuracy=1.5"), ({"check_every": 0}, "check_every=0"),
                           ({"check_examples": 0}, "check_examples=0")):
        with pytest.raises(LaserConfigError, match=message):
            warm_start(model_path, TASK, str(tmp_path), steps=2, **{"target_accuracy": 0.5, **knobs})
