"""A step whose policy answers with nothing, or runs every response into the length limit."""

from __future__ import annotations

import json

import pytest

from laser.policy.policy import Policy, Samples
from laser.run import run


def _empty_samples(self, enc, n, greedy=False, stop_strings=()):
    count = enc["input_ids"].shape[0] * n
    eos = self.tokenizer.eos_token_id
    return Samples([[eos] for _ in range(count)], ["" for _ in range(count)], count, 0)


def test_empty_responses_for_a_whole_batch_make_no_pairs_and_no_crash(make_config, tmp_path, monkeypatch):
    monkeypatch.setattr(Policy, "sample", _empty_samples)
    out = tmp_path / "run"
    results = run(make_config(["laser.iterations=1", "data.steps_per_iteration=3"], output_dir=out), out)
    assert results["complete"] and results["final"]["test/accuracy"] == 0.0
    # Identical (empty) responses are never paired: every step is skipped, none trains on them.
    assert results["skipped_steps"] == {"no_pairs": 3}
    lines = [json.loads(line) for line in (out / "selections.jsonl").read_text().splitlines()]
    assert [line["skipped"] for line in lines] == ["no_pairs"] * 3


def test_responses_cut_by_the_length_limit_still_train(make_config, tmp_path):
    out = tmp_path / "run"
    results = run(make_config(["laser.iterations=1", "data.steps_per_iteration=3", "policy.max_new_tokens=1"],
                              output_dir=out), out)
    assert results["complete"]
    header, *rows = (out / "csv" / "metrics.csv").read_text().splitlines()
    column = header.split(",").index("train/truncated_responses")
    truncated = [float(r.split(",")[column]) for r in rows if r.split(",")[column]]
    assert truncated and max(truncated) > 0  # one token leaves no room for EOS: the batch hit the limit


def test_a_step_is_skipped_on_every_rank_when_any_rank_has_no_pairs(make_config, tmp_path, monkeypatch):
    """With several processes a rank without pairs cannot sit out the backward pass (DDP's all-reduce
    would wait for it forever): the step is skipped everywhere when any rank has none. Simulated in one
    process by a peer rank that always reports no pairs."""
    import laser.step.module as module

    asked = []

    def peer_without_pairs(trainer, flag):  # a step asks twice: "an RM failed?", then "no pairs?"
        asked.append(flag)
        return flag if len(asked) % 2 else True  # no RM failed anywhere; a peer rank has no pairs

    monkeypatch.setattr(module, "any_rank", peer_without_pairs)
    out = tmp_path / "run"
    results = run(make_config(["laser.iterations=1", "data.steps_per_iteration=3"], output_dir=out), out)
    assert results["complete"] and results["skipped_steps"] == {"no_pairs": 3}
    assert False in asked  # this rank had pairs, and skipped because of its peer


@pytest.mark.parametrize(("on_no_pairs", "expected"), [("skip", []), ("neutral", [0.5] * 3), ("penalise", [0.0] * 3)])
def test_a_step_without_pairs_rewards_the_selector_as_configured(on_no_pairs, expected, make_config, tmp_path,
                                                                 monkeypatch):
    """Unrewarded, an RM that ties everything stays untried in LinUCB's eyes and is chosen again and again;
    neutral / penalise give such a decision 0.5 / 0. Nothing trains either way."""
    from laser.selection.base import Selector

    rewards = []
    original = Selector.update

    def spy(self, selection, context, reward, feedback=None):
        rewards.append(reward)
        return original(self, selection, context, reward, feedback)

    monkeypatch.setattr(Policy, "sample", _empty_samples)
    monkeypatch.setattr(Selector, "update", spy)
    out = tmp_path / "run"
    results = run(make_config(["laser.iterations=1", "data.steps_per_iteration=3", "bandit=random",
                               f"laser.on_no_pairs={on_no_pairs}"], output_dir=out), out)
    assert results["skipped_steps"] == {"no_pairs": 3}
    assert rewards == expected
