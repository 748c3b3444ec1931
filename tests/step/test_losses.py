"""The preference losses against hand-computed values: DPO (plain and label-smoothed) and NLL, and the loss
object the step is given (`DPOLoss`, built from conf/loss/)."""

from __future__ import annotations

import math

import pytest
import torch

from laser.errors import LaserConfigError
from laser.step.losses import DPOLoss, dpo_loss, nll_loss


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def log_sigmoid(x):
    return -math.log1p(math.exp(-x))


def test_dpo_loss_matches_hand_numbers():
    # logits = 0.5 * ((-1 - -2) - (-3 - -2)) = 0.5 * (1 + 1) = 1.0
    out = dpo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.0), beta=0.5)
    assert out.losses.item() == pytest.approx(-log_sigmoid(1.0), abs=1e-12)
    assert out.losses.item() == pytest.approx(0.31326168751822286, abs=1e-12)


def test_dpo_loss_is_log2_when_policy_equals_reference():
    pol_c, pol_r = t(-4.0, -1.5, -10.0), t(-2.0, -7.0, -0.5)
    out = dpo_loss(pol_c, pol_r, pol_c.clone(), pol_r.clone(), beta=0.3)
    assert torch.allclose(out.losses, torch.full((3,), math.log(2), dtype=torch.float64))
    assert torch.equal(out.chosen_rewards, torch.zeros(3, dtype=torch.float64))
    assert torch.equal(out.rejected_rewards, torch.zeros(3, dtype=torch.float64))


def test_dpo_loss_is_per_pair():
    # Pair 0: logits 0.1 * ((0 - -1) - (-5 - -1)) = 0.5; pair 1: logits 0.1 * ((-3 - -1) - (0 - 0)) = -0.2.
    out = dpo_loss(t(0.0, -3.0), t(-5.0, 0.0), t(-1.0, -1.0), t(-1.0, 0.0), beta=0.1)
    assert out.losses.shape == (2,)
    assert out.losses[0].item() == pytest.approx(-log_sigmoid(0.5), abs=1e-12)
    assert out.losses[1].item() == pytest.approx(-log_sigmoid(-0.2), abs=1e-12)


def test_implicit_rewards_are_beta_times_logratio():
    out = dpo_loss(t(-1.0, -6.0), t(-3.0, -2.0), t(-2.0, -4.0), t(-2.5, -1.0), beta=0.5)
    assert out.chosen_rewards.tolist() == pytest.approx([0.5 * 1.0, 0.5 * -2.0])
    assert out.rejected_rewards.tolist() == pytest.approx([0.5 * -0.5, 0.5 * -1.0])


def test_implicit_rewards_are_detached():
    pol_c = t(-1.0).requires_grad_()
    out = dpo_loss(pol_c, t(-3.0), t(-2.0), t(-2.0), beta=0.5)
    assert out.losses.requires_grad
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad


def test_label_smoothing_matches_formula():
    eps, beta = 0.2, 0.5
    out = dpo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.0), beta=beta, label_smoothing=eps)
    logits = 1.0
    expected = -(1 - eps) * log_sigmoid(logits) - eps * log_sigmoid(-logits)
    assert out.losses.item() == pytest.approx(expected, abs=1e-12)
    assert out.losses.item() > dpo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.0), beta=beta).losses.item()


def test_gradient_sign_favours_chosen_and_penalises_rejected():
    pol_c, pol_r = t(-2.0).requires_grad_(), t(-2.0).requires_grad_()
    dpo_loss(pol_c, pol_r, t(-2.0), t(-2.0), beta=0.5).losses.sum().backward()
    # d loss / d pi_c = -beta * sigmoid(-logits) = -0.5 * 0.5 at logits 0.
    assert pol_c.grad.item() == pytest.approx(-0.25)
    assert pol_r.grad.item() == pytest.approx(0.25)
    lower = dpo_loss(t(-1.0), t(-2.0), t(-2.0), t(-2.0), beta=0.5).losses.item()
    assert lower < math.log(2)


@pytest.mark.parametrize("beta", [0.0, -0.1])
def test_bad_beta_raises(beta):
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(t(-1.0), t(-2.0), t(-1.0), t(-2.0), beta=beta)


@pytest.mark.parametrize("eps", [-0.1, 0.5, 0.7])
def test_bad_label_smoothing_raises(eps):
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(t(-1.0), t(-2.0), t(-1.0), t(-2.0), label_smoothing=eps)


def test_nll_is_negative_logp_per_token():
    out = nll_loss(t(-6.0, -3.0), torch.tensor([3, 2]))
    assert out.tolist() == pytest.approx([2.0, 1.5])


def test_nll_zero_length_does_not_divide_by_zero():
    out = nll_loss(t(0.0, -4.0), torch.tensor([0, 0]))
    assert torch.isfinite(out).all()
    assert out.tolist() == pytest.approx([0.0, 4.0])


# ---- the loss object the step is given (conf/loss/) ------------------------------------------------------


def test_dpo_loss_object_adds_the_weighted_per_token_nll_by_hand():
    # logits = 0.5 * ((-1 - -2) - (-3 - -2)) = 1.0; NLL of the chosen = 1 / 2 tokens = 0.5
    out = DPOLoss(beta=0.5, nll_weight=2.0)(t(-1.0), t(-3.0), t(-2.0), t(-2.0), t(2.0), t(7.0))
    assert out.dpo_losses.item() == pytest.approx(-log_sigmoid(1.0), abs=1e-12)
    assert out.nll_losses.item() == pytest.approx(0.5, abs=1e-12)
    assert out.losses.item() == pytest.approx(-log_sigmoid(1.0) + 2.0 * 0.5, abs=1e-12)
    assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == pytest.approx((0.5, -0.5))


def test_dpo_loss_object_with_label_smoothing_and_no_nll_is_the_function():
    args = (t(0.0, -3.0), t(-5.0, 0.0), t(-1.0, -1.0), t(-1.0, 0.0))
    out = DPOLoss(beta=0.1, label_smoothing=0.2)(*args, t(3.0, 1.0), t(2.0, 2.0))
    assert torch.equal(out.losses, dpo_loss(*args, beta=0.1, label_smoothing=0.2).losses)


@pytest.mark.parametrize(("knobs", "message"), [
    ({"beta": 0}, "config loss.beta=0: must be a number > 0"),
    ({"label_smoothing": 0.5}, "config loss.label_smoothing=0.5: must be a number in [0, 0.5)"),
    ({"nll_weight": -1}, "config loss.nll_weight=-1: must be a number >= 0"),
])
def test_dpo_loss_object_refuses_bad_knobs_in_one_line(knobs, message):
    with pytest.raises(LaserConfigError) as error:
        DPOLoss(**knobs)
    assert str(error.value) == message


def test_the_loss_group_builds_the_object_with_its_knobs():
    from conftest import compose_config

    from laser.config.instantiate import instantiate

    loss = instantiate(compose_config(["loss.beta=0.3", "loss.nll_weight=0"]).loss)
    assert isinstance(loss, DPOLoss) and (loss.beta, loss.label_smoothing, loss.nll_weight) == (0.3, 0.0, 0.0)
    paper = compose_config(["+experiment=gsm8k"])
    assert (paper.loss.beta, paper.loss.nll_weight, paper.laser.micro_batch_size) == (0.1, 1.0, 8)
    assert compose_config(["+experiment=instruction_following"]).loss.nll_weight == 0
