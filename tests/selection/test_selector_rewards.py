"""What the selector learns from (laser/selection/selector_reward/): hand-computed values, and a contract every
`conf/selector_reward/*.yaml` must meet (a new reward yaml is picked up with no list to edit)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import CONF_DIR
from omegaconf import OmegaConf

from laser.config.instantiate import instantiate
from laser.config.moved import follow_moves
from laser.selection.normalisers.identity import IdentityNormaliser
from laser.selection.normalisers.quantile import QuantileNormaliser
from laser.selection.selector_reward.advantage import LossAdvantage, ridge_baseline
from laser.selection.selector_reward.agreement import PolicyAgreement
from laser.selection.selector_reward.base import StepEvidence, holdout_split
from laser.selection.selector_reward.heldout import HeldOutAgreement
from laser.selection.selector_reward.negative_loss import NegativeLoss

REWARDS = sorted(p.stem for p in Path(CONF_DIR, "selector_reward").glob("*.yaml"))
t = torch.tensor


def evidence(prompts=(0, 0, 1), losses=(1.0, 2.0, 3.0), dpo=(0.5, 0.7, 0.6), chosen=(-2.0, -6.0, -1.0),
             rejected=(-4.0, -3.0, -2.0), chosen_len=(2, 2, 1), rejected_len=(2, 1, 4), held=(3, 3),
             before=(0.0, 1.0), after=(0.5, 0.5)) -> StepEvidence:
    return StepEvidence(prompts=list(prompts), pair_losses=t(losses), dpo_losses=t(dpo), chosen_logps=t(chosen),
                        rejected_logps=t(rejected), chosen_lengths=t(chosen_len, dtype=torch.float32),
                        rejected_lengths=t(rejected_len, dtype=torch.float32), heldout_prompts=list(held),
                        heldout_margins_before=t(before), heldout_margins_after=t(after))


def test_the_paper_reward_is_minus_the_mean_loss_and_dpo_its_dpo_term():
    assert NegativeLoss(IdentityNormaliser()).measure(evidence()) == pytest.approx(-2.0)
    assert NegativeLoss(IdentityNormaliser(), term="dpo").measure(evidence()) == pytest.approx(-0.6)
    assert NegativeLoss(IdentityNormaliser()).measure(evidence(prompts=(), losses=(), dpo=(), chosen=(),
                                                               rejected=(), chosen_len=(), rejected_len=())) is None


def test_agreement_compares_per_token_log_probs():
    # per token: chosen -1, -3, -1 vs rejected -2, -3, -0.5 -> agrees, ties (not counted), disagrees
    assert PolicyAgreement(IdentityNormaliser()).measure(evidence()) == pytest.approx(1 / 3)


def test_heldout_agreement_counts_margins_that_grew_and_needs_held_back_pairs():
    reward = HeldOutAgreement(IdentityNormaliser(), holdout_every=4)
    assert reward.measure(evidence()) == pytest.approx(0.5)  # 0 -> 0.5 grew, 1 -> 0.5 shrank
    assert reward.measure(evidence(held=(), before=(), after=())) is None


def test_holdout_split_holds_back_every_kth_prompt():
    pairs = [(p, 0, 1) for p in range(8)] + [(3, 0, 2)]
    trained, held = holdout_split(pairs, 4)
    assert [p for p, _, _ in held] == [3, 7, 3] and len(trained) == 6
    assert holdout_split(pairs, 0) == (pairs, [])


def test_evidence_of_one_decision_keeps_its_prompts_pairs_only():
    part = evidence().for_prompts({0, 3})
    assert part.prompts == [0, 0] and part.pair_losses.tolist() == [1.0, 2.0]
    assert part.heldout_prompts == [3, 3] and part.heldout_margins_after.tolist() == [0.5, 0.5]
    assert evidence().for_prompts({1}).heldout_prompts == []


def test_ridge_baseline_hand_values():
    x = t([1.0, 0.0], dtype=torch.float64)
    # W identical unit contexts: (W / (W + lambda)) * mean reward
    assert ridge_baseline([x, x, x], [1.0, 2.0, 3.0], x, 1.0) == pytest.approx(3 / 4 * 2.0)
    assert ridge_baseline([x], [5.0], t([0.0, 1.0], dtype=torch.float64), 1.0) == pytest.approx(0.0)  # orthogonal
    assert ridge_baseline([], [], x, 1.0) == 0.0


def test_advantage_subtracts_a_shared_per_context_baseline():
    """Two kinds of prompt with losses on different scales: once the baseline has seen both, a reward is
    judged against its own context's usual loss, not the other's."""
    reward = LossAdvantage(IdentityNormaliser(), window=50)
    a, b = t([1.0, 0.0]), t([0.0, 1.0])
    for _ in range(20):
        reward.centre(-1.0, a, learn=True)
        reward.centre(-2.0, b, learn=True)
    # 20 observations per orthogonal context: the ridge baseline there is 20/21 of the context's mean
    assert reward.centre(-1.0, a, learn=False) == pytest.approx(-1.0 + 20 / 21)
    assert reward.centre(-2.0, b, learn=False) == pytest.approx(-2.0 + 40 / 21)
    assert reward.centre(-1.5, b, learn=False) > 0.4 > -0.4 > reward.centre(-1.5, a, learn=False)
    assert len(reward.rewards) == 40  # learn=False learnt nothing


def test_identity_normaliser_clips_and_quantile_peek_records_nothing():
    assert [IdentityNormaliser()(v) for v in (-0.5, 0.3, 1.5)] == [0.0, 0.3, 1.0]
    with pytest.raises(ValueError, match="finite"):
        IdentityNormaliser()(math.nan)
    norm = QuantileNormaliser()
    for value in (1.0, 2.0, 3.0):
        norm(value)
    assert norm.peek(2.5) == norm.peek(2.5) and len(norm.history) == 3
    assert norm.peek(2.5) == copy.deepcopy(norm)(2.5)


def build(name: str, make_config):
    return instantiate(make_config([f"selector_reward={name}"]).selector_reward)


@pytest.mark.parametrize("name", REWARDS)
def test_a_run_saved_before_the_rename_still_builds_its_reward(name, make_config):
    """Run folders saved before `laser.selection.rewards` became `laser.selection.selector_reward` name the old
    path in their config.yaml, which `resume=` instantiates after `follow_moves`: the same class, with its knobs."""
    saved = OmegaConf.to_container(make_config([f"selector_reward={name}"]).selector_reward)
    assert saved["_target_"].startswith("laser.selection.selector_reward.")
    saved["_target_"] = saved["_target_"].replace(".selector_reward.", ".rewards.")
    old, new = instantiate(follow_moves(OmegaConf.create(saved))), build(name, make_config)
    assert type(old) is type(new) and vars(old).keys() == vars(new).keys()
    assert old.holdout_every == new.holdout_every and type(old.normaliser) is type(new.normaliser)


@pytest.mark.parametrize("name", REWARDS)
def test_reward_contract_peek_learns_nothing_and_state_round_trips(name, make_config):
    """Every reward: values in [0, 1]; `peek` gives what the call would without changing what comes next;
    a reward restored from `state_dict` continues exactly as the original."""
    generator = torch.Generator().manual_seed(0)
    first, second = build(name, make_config), build(name, make_config)
    for step in range(12):
        context = torch.nn.functional.normalize(torch.randn(5, generator=generator), dim=0)
        raw = float(torch.rand(1, generator=generator)) - (step % 2)
        peeked = first.peek(raw, context)
        assert 0.0 <= first(raw, context) <= 1.0
        assert peeked == second(raw, context)
    restored = build(name, make_config)
    restored.load_state_dict(copy.deepcopy(first.state_dict()))
    context = torch.nn.functional.normalize(torch.ones(5), dim=0)
    assert restored(0.3, context) == first(0.3, context)


@pytest.mark.parametrize("name", REWARDS)
def test_reward_contract_a_short_run_learns_from_it(name, make_config, tmp_path):
    from laser.run import run

    out = tmp_path / "run"
    result = run(make_config([f"selector_reward={name}", "laser.iterations=1", "data.steps_per_iteration=3"],
                             output_dir=out), out)
    assert result["complete"]
    lines = [json.loads(line) for line in (out / "selections.jsonl").read_text().splitlines()]
    rewarded = [line for line in lines if line["reward_normalised"] is not None]
    assert rewarded and all(0.0 <= line["reward_normalised"] <= 1.0 for line in rewarded)
