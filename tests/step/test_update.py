"""The update of one step (laser/step/update.py) on fixed pairs: one optimiser step whatever the micro-batches,
the same gradient, evidence and selector reward as one micro-batch, held-back pairs measured around it; an
update measured and then undone leaves the adapter and the optimiser exactly as they were."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch
from test_preference import GRAD_RTOL, LOSS, VALUE_ATOL, N, make_policy, make_step, tiny_model, trainable

from laser.selection.normalisers.identity import IdentityNormaliser
from laser.selection.selector_reward.heldout import HeldOutAgreement
from laser.selection.selector_reward.negative_loss import NegativeLoss
from laser.step.microbatch import MicroBatching
from laser.step.preference import policy_margins
from laser.step.update import update_on_pairs, update_then_undo


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_model(tmp_path_factory)


@pytest.fixture
def step():
    return make_step()


def run_update(model_path, step, micro_batch_size, holdout_every=0):
    """update_on_pairs with a plain SGD step; returns (evidence, loss, metrics, the gradient, optimiser calls)."""
    prompts, responses, pairs = step
    policy = make_policy(model_path)
    calls, grads = [], []

    def optimiser_step(accumulate):
        for p in trainable(policy):
            p.grad = None
        accumulate(torch.Tensor.backward)
        grads.append(torch.cat([p.grad.flatten() for p in trainable(policy)]))
        with torch.no_grad():
            for p in trainable(policy):
                p -= 0.5 * p.grad
        calls.append(1)

    before = policy_margins(policy, prompts, responses, pairs, N)
    evidence, loss, metrics = update_on_pairs(policy, prompts, responses, pairs, N, LOSS,
                                              MicroBatching(micro_batch_size), holdout_every, optimiser_step)
    return evidence, loss, metrics, grads[0], len(calls), before


@pytest.mark.parametrize("micro_batch_size", [1, 4])
def test_micro_batched_update_is_one_step_with_the_whole_batch_evidence_and_reward(model_path, step,
                                                                                   micro_batch_size):
    whole, whole_loss, whole_metrics, whole_grad, _, _ = run_update(model_path, step, None)
    evidence, loss, metrics, grad, calls, _ = run_update(model_path, step, micro_batch_size)
    assert calls == 1
    assert (grad - whole_grad).norm() <= GRAD_RTOL * whole_grad.norm()
    assert float(loss) == pytest.approx(float(whole_loss), abs=VALUE_ATOL)
    for field in ("pair_losses", "dpo_losses", "chosen_logps", "rejected_logps"):
        assert torch.allclose(getattr(evidence, field), getattr(whole, field), atol=VALUE_ATOL), field
    assert torch.equal(evidence.chosen_lengths, whole.chosen_lengths) and evidence.prompts == whole.prompts
    assert metrics == pytest.approx(whole_metrics, abs=VALUE_ATOL)
    paper = NegativeLoss(IdentityNormaliser())
    assert paper.measure(evidence) == pytest.approx(paper.measure(whole), abs=VALUE_ATOL)
    assert paper.measure(whole) == pytest.approx(-float(whole_loss), abs=1e-6)


def test_held_back_pairs_are_measured_before_and_after_the_step_not_trained(model_path, step):
    prompts, responses, pairs = step
    evidence, _, _, _, calls, before = run_update(model_path, step, micro_batch_size=2, holdout_every=2)
    held = [i for i, (p, _, _) in enumerate(pairs) if p % 2 == 1]
    assert calls == 1 and set(evidence.heldout_prompts) == {1} and 1 not in evidence.prompts
    assert len(evidence.prompts) == len(pairs) - len(held)
    assert torch.allclose(evidence.heldout_margins_before, before[held], atol=VALUE_ATOL)
    assert not torch.allclose(evidence.heldout_margins_after, evidence.heldout_margins_before, atol=1e-3)
    assert HeldOutAgreement(IdentityNormaliser(), holdout_every=2).measure(evidence) is not None


# ---- an update measured, then undone (exploration steps that do not train, counterfactuals) --------------


def plain_step(policy, optimiser, max_grad_norm):
    """An optimiser step as `update_then_undo` takes it: zero, backward, clip, step."""
    def step(accumulate):
        optimiser.zero_grad()
        accumulate(torch.Tensor.backward)
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(trainable(policy), max_grad_norm)
        optimiser.step()
    return step


def trained_once(model_path, step):
    """A policy and its AdamW after one real update (so the optimiser has moments to restore)."""
    prompts, responses, pairs = step
    policy = make_policy(model_path)
    optimiser = torch.optim.AdamW(trainable(policy), lr=0.05, weight_decay=0.01)
    update_on_pairs(policy, prompts, responses, pairs, N, LOSS, MicroBatching(), 0, plain_step(policy, optimiser, 1.0))
    return policy, optimiser


def update(policy, step, holdout_every=2):
    prompts, responses, pairs = step
    return partial(update_on_pairs, policy, prompts, responses, pairs, N, LOSS, MicroBatching(2), holdout_every)


def test_an_undone_update_measures_the_real_update_and_restores_adapter_and_adam_state_bitwise(model_path, step):
    policy, optimiser = trained_once(model_path, step)
    adapter, adam = policy.adapter_state_dict(), copy.deepcopy(optimiser.state_dict())
    evidence, loss, metrics = update_then_undo(policy, optimiser, 1.0, update(policy, step))
    # the step happened inside: the held-back pairs' margins moved
    assert not torch.allclose(evidence.heldout_margins_after, evidence.heldout_margins_before, atol=1e-3)
    after = policy.adapter_state_dict()
    assert adapter.keys() == after.keys() and all(torch.equal(adapter[k], after[k]) for k in adapter)
    state = optimiser.state_dict()["state"]
    assert state.keys() == adam["state"].keys()
    for key in state:
        assert all(torch.equal(state[key][name], adam["state"][key][name]) for name in ("step", "exp_avg", "exp_avg_sq"))
    assert all(p.grad is None for p in trainable(policy))
    # a twin with the same history takes the update for real: the same measurement, bit for bit
    twin, twin_optimiser = trained_once(model_path, step)
    real, real_loss, real_metrics = update(twin, step)(plain_step(twin, twin_optimiser, 1.0))
    assert torch.equal(loss, real_loss) and metrics == real_metrics
    assert torch.equal(evidence.heldout_margins_after, real.heldout_margins_after)
    assert torch.equal(evidence.pair_losses, real.pair_losses)
    # and the policy with the undone update continues exactly as one that never took it
    update(policy, step)(plain_step(policy, optimiser, 1.0))
    assert all(torch.equal(a, b) for a, b in zip(policy.adapter_state_dict().values(),
                                                  twin.adapter_state_dict().values(), strict=True))


@pytest.mark.parametrize(("max_grad_norm", "moved"), [(0.0, True), (1e-6, False)])
def test_an_undone_update_clips_its_gradient_to_max_grad_norm(model_path, step, max_grad_norm, moved):
    """Plain SGD at lr 1 (Adam would hide the gradient's size): clipped to 1e-6 the step barely moves the
    held-back pairs' margins; unclipped (0) it moves them."""
    policy = make_policy(model_path)
    optimiser = torch.optim.SGD(trainable(policy), lr=1.0)
    evidence, _, _ = update_then_undo(policy, optimiser, max_grad_norm, update(policy, step))
    change = (evidence.heldout_margins_after - evidence.heldout_margins_before).abs().max()
    assert (change > 1e-3) == moved and (moved or change < 1e-5)
