"""Counterfactual diagnostics (laser/step/counterfactuals.py): they change nothing of the run, and for the
RM that was chosen they equal what the step itself measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CONF_DIR

from laser.run import run

REWARDS = sorted(p.stem for p in Path(CONF_DIR, "selector_reward").glob("*.yaml"))


def lines(folder: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (folder / name).read_text().splitlines()]


@pytest.mark.parametrize("reward", REWARDS)
def test_counterfactuals_change_nothing_and_the_chosen_rm_equals_the_step(reward, make_config, tmp_path):
    overrides = [f"selector_reward={reward}", "laser.iterations=1", "data.steps_per_iteration=4"]
    plain, diagnosed = tmp_path / "plain", tmp_path / "diagnosed"
    run(make_config(overrides, output_dir=plain), plain)
    run(make_config([*overrides, "laser.counterfactuals=true"], output_dir=diagnosed), diagnosed)
    assert (plain / "selections.jsonl").read_text() == (diagnosed / "selections.jsonl").read_text()
    assert not (plain / "counterfactuals.jsonl").exists()
    steps = lines(diagnosed, "counterfactuals.jsonl")
    assert [s["step"] for s in steps] == list(range(4))
    for step, selection in zip(steps, lines(diagnosed, "selections.jsonl"), strict=True):
        assert set(step["arms"]) == {"arith_judge", "compare_judge", "noise"} and step["reward"] == reward
        chosen = step["arms"][selection["arm_name"]]
        assert chosen["reward_raw"] == selection["reward_raw"]  # the same update, the same measurement
        assert chosen["gold_pair_accuracy"] == selection["gold_pair_accuracy"]
        assert isinstance(selection["chosen_score"], float)  # one RM chose: its score of what it preferred
        for arm in step["arms"].values():
            assert arm["reward_normalised"] is None or 0.0 <= arm["reward_normalised"] <= 1.0
            if arm["pairs"]:  # right-over-wrong and wrong-over-right pairs are disjoint shares of the pairs
                assert 0.0 <= arm["gold_pair_accuracy"] + arm["gold_pair_inverted"] <= 1.0


def test_counterfactual_gold_accuracy_separates_the_judges_by_category(make_config, tmp_path):
    """On the embedded pool, the judge reliable on a batch's category has the best pairs by the gold
    answers there, and the noise RM never does on average: what the report's rankings are compared with."""
    out = tmp_path / "run"
    run(make_config(["laser.counterfactuals=true", "laser.iterations=1", "data.steps_per_iteration=6"],
                    output_dir=out), out)
    by_category: dict[str, dict[str, list[float]]] = {}
    for step in lines(out, "counterfactuals.jsonl"):
        category = next(iter(step["categories"]))
        for name, arm in step["arms"].items():
            if arm["gold_pair_accuracy"] is not None:
                by_category.setdefault(category, {}).setdefault(name, []).append(arm["gold_pair_accuracy"])
    comparison = {name: sum(v) / len(v) for name, v in by_category["comparison"].items()}
    assert max(comparison, key=comparison.get) == "compare_judge"
    assert comparison["compare_judge"] > comparison["noise"] + 0.3
    # The reliable judge rarely prefers a wrong answer to a right one (here never); the noise RM often does.
    inverted = {name: [arm["gold_pair_inverted"] for step in lines(out, "counterfactuals.jsonl")
                       if next(iter(step["categories"])) == "comparison" and (arm := step["arms"][name])["pairs"]]
                for name in ("compare_judge", "noise")}
    assert sum(inverted["compare_judge"]) / len(inverted["compare_judge"]) < 0.1 < sum(inverted["noise"]) / len(inverted["noise"])


def test_exploration_without_update_trains_only_once_every_arm_is_tried(make_config, tmp_path):
    """LinUCB explore_pulls with train_while_exploring=false: the forced exploration steps earn rewards (the
    bandit learns) but leave the policy as it was; the steps after them train. With one region of context
    (a batch mean of last-token states is nearly constant at a fixed policy) and 3 arms x 2 pulls, about
    the first 6 steps explore."""
    from laser.run import build, make_trainer

    out = tmp_path / "run"
    cfg = make_config(["bandit.explore_pulls=2", "bandit.train_while_exploring=false", "laser.iterations=1",
                       "data.steps_per_iteration=10", "data.group_by_category=false"], output_dir=out)
    result = run(cfg, out)
    selections = lines(out, "selections.jsonl")
    explored = result["skipped_steps"]["exploration_not_trained"]
    assert 6 <= explored < 10
    assert all(s["reward_normalised"] is not None for s in selections[:explored])
    assert sorted(s["arm"] for s in selections[:6]) == [0, 0, 1, 1, 2, 2]
    # the same run stopped after the exploration: the adapter is still the untrained one (B = 0)
    cfg = make_config(["bandit.explore_pulls=20", "bandit.train_while_exploring=false", "laser.iterations=1",
                       "data.steps_per_iteration=4"], output_dir=tmp_path / "b")
    parts = build(cfg, tmp_path / "b")
    trainer = make_trainer(cfg, tmp_path / "b")
    trainer.fit(parts["module"], datamodule=parts["datamodule"])
    lora_b = [v for k, v in parts["module"].policy.adapter_state_dict().items() if "lora_B" in k]
    assert lora_b and all(bool((v == 0).all()) for v in lora_b)
