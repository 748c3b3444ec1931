"""The update of one step (laser/step/update.py) on fixed pairs: one optimiser step whatever the micro-batches,
the same gradient, evidence and selector reward as one micro-batch, held-back pairs measured around it."""

from __future__ import annotations

import pytest
import torch
from test_preference import GRAD_RTOL, LOSS, VALUE_ATOL, N, make_policy, make_step, tiny_model, trainable

from laser.selection.normalisers.identity import IdentityNormaliser
from laser.selection.selector_reward.heldout import HeldOutAgreement
from laser.selection.selector_reward.negative_loss import NegativeLoss
from laser.step.microbatch import MicroBatching
from laser.step.preference import policy_margins
from laser.step.update import update_on_pairs


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
