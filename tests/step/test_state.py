"""What a checkpoint holds of a run (laser/step/state.py): saved, written as Lightning writes it (torch.save,
loaded with weights_only=True) and restored into freshly built parts, the run continues exactly: the same
bandit choices and propensities, the same normalised rewards, the same RM noise draws and counters, the
same tracker, and the policy's weights (merged reference and live adapter) bit for bit."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
import torch
from rm_fakes import CountingRM, make_batch
from test_preference import make_policy, tiny_model

from laser.rewards.noisy import NoisyRM
from laser.rewards.pool import RewardModelPool
from laser.runs.results import IterationTracker
from laser.selection.lints import LinTS
from laser.selection.normalisers.quantile import QuantileNormaliser
from laser.selection.selector_reward.negative_loss import NegativeLoss
from laser.step.state import Resumable, checkpoint_state, restore_checkpoint_state, restore_policy_weights

ONE_PROCESS = SimpleNamespace(world_size=1)
CONTEXTS = torch.nn.functional.normalize(torch.randn(8, 4, generator=torch.Generator().manual_seed(1)), dim=1)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_model(tmp_path_factory)


def build(model_path, seed: int) -> Resumable:
    """A run's stateful parts; `seed` sets what a fresh build would differ in (bandit and noise streams)."""
    pool = RewardModelPool({"noisy": NoisyRM(CountingRM(), corrupt_prob=0.5, noise_std=0.1, seed=seed),
                            "counting": CountingRM()})
    return Resumable(make_policy(model_path), LinTS(2, seed=seed), NegativeLoss(QuantileNormaliser()), pool,
                     IterationTracker())


def advance(run: Resumable, steps: range) -> list:
    """Steps of the run without a policy: choose, score with the chosen RM, reward, count. Returns what
    happened (choices, propensities, scores, normalised rewards), to compare two runs by."""
    happened = []
    for step in steps:
        context = CONTEXTS[step % len(CONTEXTS)]
        selection = run.selector.select(context)
        scores = run.rm_pool.score(selection.arms, make_batch(["addition", "comparison"] * 2))[selection.arms[0]]
        reward = run.selector_reward(-float(scores.mean()) + 0.1 * step, context)
        run.selector.update(selection, context, reward)
        run.tracker.on_step(10 + step)
        run.tracker.on_decision([run.rm_pool.names[selection.arms[0]]])
        run.tracker.on_loss(0.5 / (1 + step))
        happened.append((selection.arms, selection.propensity, scores.tolist(), reward))
    return happened


def saved_and_loaded(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_a_restored_run_continues_exactly(model_path):
    original = build(model_path, seed=0)
    advance(original, range(6))
    original.tracker.close(1, {"test/accuracy": 0.5}, original.rm_pool.call_counts(), 60, 1.0, original.rm_pool.names)
    with torch.no_grad():  # a trained adapter, merged into the reference, then trained again
        for _, layer in original.policy.lora_layers():
            layer.lora_B["default"].weight.normal_(0.0, 0.2, generator=torch.Generator().manual_seed(2))
    original.policy.refresh_reference()
    with torch.no_grad():
        for _, layer in original.policy.lora_layers():
            layer.lora_B["default"].weight.normal_(0.0, 0.2, generator=torch.Generator().manual_seed(3))

    state = saved_and_loaded(checkpoint_state(original, ONE_PROCESS, last_eval={"test/accuracy": 0.5},
                                              wall_seconds=12.5))
    restored = build(model_path, seed=7)
    back = restore_checkpoint_state(restored, state, rank=0, world_size=1)
    restore_policy_weights(restored.policy, back)

    assert back["last_eval"] == {"test/accuracy": 0.5} and back["wall_seconds"] == 12.5
    assert restored.tracker.state_dict() == original.tracker.state_dict()
    assert restored.rm_pool.counters() == original.rm_pool.counters()
    assert advance(restored, range(6, 14)) == advance(original, range(6, 14))  # choices, scores, rewards
    weights = dict(original.policy.model.named_parameters())
    for name, value in restored.policy.model.named_parameters():  # base (with the merge) and adapter
        assert torch.equal(value, weights[name]), name


def test_each_rank_takes_its_own_streams_and_counters_or_rank_zeros_under_another_world_size(model_path):
    zero, one = build(model_path, seed=0), build(model_path, seed=1)
    advance(zero, range(3))
    advance(one, range(5))
    state = checkpoint_state(zero, ONE_PROCESS)
    state["per_rank"] = [state["per_rank"][0], checkpoint_state(one, ONE_PROCESS)["per_rank"][0]]  # as 2 ranks write it
    batch = make_batch(["addition"] * 4)

    as_rank_one = build(model_path, seed=9)
    restore_checkpoint_state(as_rank_one, saved_and_loaded(state), rank=1, world_size=2)
    assert as_rank_one.tracker.state_dict() == one.tracker.state_dict()
    assert as_rank_one.rm_pool.counters() == one.rm_pool.counters()
    assert torch.equal(as_rank_one.rm_pool.score([0], batch)[0], one.rm_pool.score([0], batch)[0])  # its noise
    # the selector is shared by the ranks: rank 0's
    assert as_rank_one.selector.select(CONTEXTS[0]) == zero.selector.select(CONTEXTS[0])

    resized = build(model_path, seed=9)  # a checkpoint of 2 ranks resumed on 3: every rank takes rank 0's
    restore_checkpoint_state(resized, saved_and_loaded(state), rank=1, world_size=3)
    assert resized.tracker.state_dict() == zero.tracker.state_dict()
    assert torch.equal(resized.rm_pool.score([0], batch)[0], zero.rm_pool.score([0], batch)[0])
