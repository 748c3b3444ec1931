"""The shared ridge state and the linear bandits built on it (LinUCB, LinTS, epsilon-greedy,
D-LinUCB), checked against direct solves, hand-rolled loops, hand-computed values and properties."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONF_DIR, compose_config
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from laser.config.instantiate import instantiate
from laser.selection.base import Selection, Selector
from laser.selection.discounted_linucb import DiscountedLinUCB
from laser.selection.eps_greedy import EpsilonGreedy, epsilon_schedule
from laser.selection.lints import LinTS
from laser.selection.linucb import LinUCB, ucb_scores
from laser.selection.ridge import RidgeArms, sherman_morrison_update

E1, E2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
F64 = torch.float64


def stream(n: int, d: int = 3, seed: int = 0) -> tuple[list[torch.Tensor], list[float]]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(d, generator=gen) for _ in range(n)], torch.rand(n, generator=gen).tolist()


def pull(bandit: Selector, arm: int, x: torch.Tensor, reward: float) -> None:
    bandit.update(Selection(arms=(arm,)), x, reward)


def direct_ridge(xs, rs, arms, k: int, d: int, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(A_k, b_k) summed directly over the pulls of arm k."""
    A, b = lam * torch.eye(d, dtype=F64), torch.zeros(d, dtype=F64)
    for x, r, a in zip(xs, rs, arms, strict=True):
        if a == k:
            A, b = A + torch.outer(x.double(), x.double()), b + r * x.double()
    return A, b


# ---- RidgeArms and Sherman-Morrison ----------------------------------------------------------------------


def test_ridge_arms_match_a_direct_solve() -> None:
    xs, rs = stream(40, d=4)
    arms = [(t * 7) % 3 for t in range(40)]
    ridge = RidgeArms(3, ridge_lambda=0.7)
    assert ridge.dim is None and ridge.A is None  # lazily allocated
    for x, r, a in zip(xs, rs, arms, strict=True):
        ridge.observe(a, ridge.prepare(x), r)
    q = ridge.prepare(torch.tensor([0.3, -1.0, 0.5, 2.0]))
    for k in range(3):
        A, b = direct_ridge(xs, rs, arms, k, 4, 0.7)
        theta = torch.linalg.solve(A, b)
        torch.testing.assert_close(ridge.theta()[k], theta, atol=1e-10, rtol=0)
        torch.testing.assert_close(ridge.estimates(q)[k], theta @ q, atol=1e-10, rtol=0)
        torch.testing.assert_close(ridge.variances(q)[k], q @ torch.linalg.solve(A, q), atol=1e-10, rtol=0)
    assert ridge.counts == [arms.count(k) for k in range(3)] and ridge.dim == 4


def test_ridge_decay_reset_and_weights_only_state() -> None:
    ridge = RidgeArms(2, ridge_lambda=2.0)
    ridge.observe(0, ridge.prepare(E1), 1.0)  # A0 = diag(3, 2), b0 = (1, 0)
    ridge.decay(0.5)  # A0 = 0.5 diag(3,2) + 0.5*2 I = diag(2.5, 2); A1 = 2 I; b0 = (0.5, 0)
    torch.testing.assert_close(ridge.A[0], torch.diag(torch.tensor([2.5, 2.0], dtype=F64)))
    torch.testing.assert_close(ridge.A[1], 2.0 * torch.eye(2, dtype=F64))
    torch.testing.assert_close(ridge.b[0], torch.tensor([0.5, 0.0], dtype=F64))
    torch.testing.assert_close(ridge.A_inv, torch.linalg.inv(ridge.A), atol=1e-12, rtol=0)
    buf = io.BytesIO()
    torch.save(ridge.state_dict(), buf)
    buf.seek(0)
    copy = RidgeArms(2, ridge_lambda=2.0)
    copy.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(copy.A_inv, ridge.A_inv) and copy.counts == [1, 0]
    ridge.reset()
    assert ridge.counts == [0, 0] and ridge.dim == 2 and torch.equal(ridge.b, torch.zeros(2, 2, dtype=F64))
    torch.testing.assert_close(ridge.A_inv, 0.5 * torch.eye(2, dtype=F64).repeat(2, 1, 1))


def test_sherman_morrison_matches_exact_inverse_after_50_updates() -> None:
    gen = torch.Generator().manual_seed(0)
    d, lam = 6, 0.5
    A, A_inv = lam * torch.eye(d, dtype=torch.float64), torch.eye(d, dtype=torch.float64) / lam
    for _ in range(50):
        x = torch.randn(d, generator=gen, dtype=torch.float64)
        A += torch.outer(x, x)
        A_inv = sherman_morrison_update(A_inv, x)
    torch.testing.assert_close(A_inv, torch.linalg.inv(A), atol=1e-9, rtol=0)


def test_incremental_inverse_tracks_A_and_refresh_inverse() -> None:
    gen = torch.Generator().manual_seed(1)
    bandit = LinUCB(3, ridge_lambda=2.0)
    for t in range(60):
        pull(bandit, t % 3, torch.randn(4, generator=gen), float(torch.rand(1, generator=gen)))
    torch.testing.assert_close(bandit.A_inv, torch.linalg.inv(bandit.A), atol=1e-9, rtol=0)
    assert bandit.counts == [20, 20, 20] and bandit.A.dtype == torch.float64
    bandit.refresh_inverse()
    torch.testing.assert_close(bandit.A_inv, torch.linalg.inv(bandit.A), atol=1e-12, rtol=0)


vectors = st.lists(st.floats(min_value=-3, max_value=3, allow_nan=False), min_size=4, max_size=4)


@settings(max_examples=50, deadline=None)
@given(vectors)
def test_sherman_morrison_matches_a_direct_inverse(x):
    x = torch.tensor(x, dtype=torch.float64)
    A = torch.eye(4, dtype=torch.float64) * 2.0
    assert torch.allclose(sherman_morrison_update(torch.linalg.inv(A), x), torch.linalg.inv(A + torch.outer(x, x)),
                          atol=1e-9)


def test_sherman_morrison_in_place_updates_the_given_tensor_to_the_same_values():
    x = torch.tensor([0.5, -1.0, 2.0, 0.25], dtype=torch.float64)
    stack = torch.linalg.inv(torch.eye(4, dtype=torch.float64) * 2.0).repeat(2, 1, 1)
    expected = sherman_morrison_update(stack[1], x)
    returned = sherman_morrison_update(stack[1], x, in_place=True)
    assert returned.data_ptr() == stack[1].data_ptr()  # written into the stack, no copy
    assert torch.equal(stack[1], expected) and torch.equal(stack[0], torch.eye(4, dtype=torch.float64) / 2)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(vectors, st.floats(min_value=0, max_value=1), st.integers(0, 2)), min_size=1, max_size=40))
def test_linucb_keeps_A_symmetric_positive_definite_and_its_inverse_consistent(updates):
    bandit = LinUCB(num_arms=3, alpha=0.5)
    for x, reward, arm in updates:
        context = torch.tensor(x, dtype=torch.float64)
        bandit.select(context)
        bandit.update(Selection(arms=(arm,)), context, reward)
    for k in range(3):
        A, A_inv = bandit.A[k], bandit.A_inv[k]
        assert torch.allclose(A, A.T) and torch.linalg.eigvalsh(A).min() > 0
        assert torch.allclose(A @ A_inv, torch.eye(4, dtype=torch.float64), atol=1e-6)


# ---- LinUCB ----------------------------------------------------------------------------------------------


def test_ucb_scores_hand_example() -> None:
    # Arm 0 saw x=(1,1), r=1: A0=[[2,1],[1,2]], A0^-1=[[2,-1],[-1,2]]/3, theta0=(1,1)/3. Arm 1 saw nothing.
    A_inv = torch.stack([torch.tensor([[2.0, -1.0], [-1.0, 2.0]]) / 3, torch.eye(2)]).double()
    b = torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    est, bonus = ucb_scores(A_inv, b, E1.double(), alpha=0.1)
    torch.testing.assert_close(est, torch.tensor([1 / 3, 0.0], dtype=torch.float64))
    torch.testing.assert_close(bonus, torch.tensor([0.1 * math.sqrt(2 / 3), 0.1], dtype=torch.float64))


def test_linucb_two_arm_hand_example_and_alpha_flips_choice() -> None:
    # Arm 0: x=e1, r=1 -> A0^-1=diag(1/2, 1), theta0=(1/2, 0). Arm 1: x=e2, r=0.5 -> theta1=(0, 1/4).
    # Query e1: arm 0 = 1/2 + alpha*sqrt(1/2), arm 1 = 0 + alpha*1; alpha=1 picks 0, alpha=2 picks 1.
    for alpha, want in [(1.0, 0), (2.0, 1)]:
        bandit = LinUCB(2, alpha=alpha, ridge_lambda=1.0)
        pull(bandit, 0, E1, 1.0)
        pull(bandit, 1, E2, 0.5)
        sel = bandit.select(E1)
        assert sel.arm == want and sel.propensity == 1.0
        assert sel.info["estimates"] == pytest.approx([0.5, 0.0], abs=1e-12)
        assert sel.info["bonuses"] == pytest.approx([alpha * math.sqrt(0.5), alpha], abs=1e-12)
        assert sel.info["counts"] == [1, 1]
        torch.testing.assert_close(bandit.A[1], torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64))
        torch.testing.assert_close(bandit.b[1], torch.tensor([0.0, 0.5], dtype=torch.float64))


def test_bonus_shrinks_as_one_over_sqrt_n() -> None:
    bandit = LinUCB(1, alpha=0.1, ridge_lambda=1.0)
    bonuses = []
    for n in range(6):
        bonuses.append(bandit.select(E1).info["bonuses"][0])
        assert bonuses[-1] == pytest.approx(0.1 / math.sqrt(1 + n), abs=1e-12)  # A = (1 + n) on e1
        pull(bandit, 0, E1, 0.3)
    assert all(a > b for a, b in zip(bonuses, bonuses[1:], strict=False))


def tied_choices(seed: int, n: int = 60) -> list[int]:
    bandit = LinUCB(3, seed=seed)  # no updates: all three arms tie on every call
    sels = [bandit.select(E1) for _ in range(n)]
    assert all(s.propensity == pytest.approx(1 / 3) for s in sels)
    return [s.arm for s in sels]


def test_ties_broken_by_seed() -> None:
    assert tied_choices(0) == tied_choices(0)
    assert tied_choices(0) != tied_choices(1)
    assert set(tied_choices(0)) == {0, 1, 2}


@pytest.mark.parametrize("reward", [-0.01, 1.01, float("nan")])
def test_update_rejects_reward_outside_unit_interval(reward: float) -> None:
    with pytest.raises(ValueError, match="reward must be in"):
        pull(LinUCB(2), 0, E1, reward)


def test_context_dimension_is_fixed_by_first_call() -> None:
    bandit = LinUCB(2)
    bandit.select(torch.ones(3, dtype=torch.float16))
    assert bandit.dim == 3
    with pytest.raises(ValueError, match="dimension 2, expected 3"):
        bandit.select(E1)


@pytest.mark.parametrize("alpha", [0.0, 0.3])  # alpha=0, reward 0: every choice is a tie, so the RNG decides
def test_state_dict_round_trip_gives_same_next_20_choices(alpha: float) -> None:
    gen = torch.Generator().manual_seed(2)
    contexts = [torch.randn(3, generator=gen) for _ in range(50)]
    rewards = torch.rand(50, generator=gen).tolist() if alpha else [0.0] * 50

    def step(bandit: LinUCB, t: int) -> int:
        sel = bandit.select(contexts[t])
        bandit.update(sel, contexts[t], rewards[t])
        return sel.arm

    original = LinUCB(3, alpha=alpha, seed=5)
    for t in range(30):
        step(original, t)
    buf = io.BytesIO()
    torch.save(original.state_dict(), buf)  # as in a checkpoint (weights_only load, the torch default)
    buf.seek(0)
    restored = LinUCB(3, alpha=alpha, seed=999)
    restored.load_state_dict(torch.load(buf, weights_only=True))
    assert [step(original, t) for t in range(30, 50)] == [step(restored, t) for t in range(30, 50)]


def test_linucb_learns_which_rm_suits_which_context() -> None:
    bandit = LinUCB(2, alpha=0.1, seed=0)
    best = {0: 1, 1: 0}  # context e1 -> arm 1, e2 -> arm 0
    rng = np.random.default_rng(0)
    for _ in range(50):
        c = int(rng.integers(2))
        x = (E1, E2)[c]
        sel = bandit.select(x)
        bandit.update(sel, x, 1.0 if sel.arm == best[c] else 0.0)
    assert bandit.select(E1).arm == 1 and bandit.select(E2).arm == 0


def test_explore_pulls_tries_every_arm_in_every_region_before_exploiting() -> None:
    """Greedy LinUCB (alpha 0) with explore_pulls=2, two orthogonal regions, arm r right in region r: each
    region pulls each of the 3 arms exactly twice, then only its right arm, whichever arm won the first
    (tied) round; with explore_pulls=0 nothing is forced."""
    regions = [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])]
    for explore_pulls, expected_first_exploit in ((2, 12), (0, 0)):
        bandit = LinUCB(3, alpha=0.0, explore_pulls=explore_pulls, seed=1)
        pulls = {0: [], 1: []}
        for t in range(20):
            region = t % 2
            selection = bandit.select(regions[region])
            assert selection.info["exploring"] == (t < expected_first_exploit)
            pulls[region].append(selection.arm)
            bandit.update(selection, regions[region], 1.0 if selection.arm == region else 0.2)
        if explore_pulls:
            for region in (0, 1):
                assert sorted(pulls[region][:6]) == [0, 0, 1, 1, 2, 2] and set(pulls[region][6:]) == {region}


def test_linucb_diagnostics_hand_values() -> None:
    # The hand example of test_bandits: theta0 = (1/2, 0), A0^-1 = diag(1/2, 1); arm 1 never saw e1.
    bandit = LinUCB(2, ["a", "b"], alpha=1.0)
    assert bandit.diagnostics() == {"count/a": 0.0, "count/b": 0.0}
    pull(bandit, 0, E1, 1.0)
    pull(bandit, 1, E2, 0.5)
    bandit.select(E1)
    want = {"count/a": 1, "count/b": 1, "estimate/a": 0.5, "estimate/b": 0, "bonus/a": 0.5**0.5, "bonus/b": 1}
    assert bandit.diagnostics() == pytest.approx(want, abs=1e-12)


# ---- LinTS, epsilon-greedy, D-LinUCB ---------------------------------------------------------------------


def test_lints_draws_match_a_hand_reproduction() -> None:
    xs, rs = stream(30)
    arms = [t % 3 for t in range(30)]
    bandit = LinTS(3, v=0.7, ridge_lambda=1.5, seed=11)
    for x, r, a in zip(xs, rs, arms, strict=True):
        pull(bandit, a, x, r)  # updates draw nothing, so the generator is still at its seed
    query = torch.tensor([0.2, -0.4, 1.0])
    sel = bandit.select(query)
    z = torch.randn(3, 3, generator=torch.Generator().manual_seed(11), dtype=F64)
    thetas = []
    for k in range(3):
        A, b = direct_ridge(xs, rs, arms, k, 3, 1.5)
        L = torch.linalg.cholesky(torch.linalg.inv(A))
        thetas.append(torch.linalg.solve(A, b) + 0.7 * L @ z[k])
    thetas = torch.stack(thetas)
    torch.testing.assert_close(bandit.last_thetas, thetas, atol=1e-10, rtol=0)
    assert sel.arm == int(torch.argmax(thetas @ query.double()))
    assert sel.info["samples"] == pytest.approx((thetas @ query.double()).tolist(), abs=1e-10)


@pytest.mark.parametrize("make", [lambda: LinTS(3, v=0.0), lambda: EpsilonGreedy(3, eps0=0.0, eps_min=0.0)])
def test_lints_v0_and_eps0_are_greedy_on_theta_hat(make: Callable[[], Selector]) -> None:
    bandit = make()
    xs, rs = stream(60, seed=3)
    for t, (x, r) in enumerate(zip(xs, rs, strict=True)):
        pull(bandit, t % 3, x, r)
    for x in stream(20, seed=4)[0]:
        sel = bandit.select(x)
        assert sel.arm == int(torch.argmax(bandit.ridge.estimates(x.double()))) and sel.propensity == 1.0


def test_lints_propensity_estimates() -> None:
    bandit = LinTS(2, v=0.5, seed=1)
    first = bandit.select(E1)  # untrained twins: each wins half the draws
    assert 0.25 < first.propensity < 0.75
    for _ in range(50):
        pull(bandit, 0, E1, 1.0)
        pull(bandit, 1, E1, 0.0)  # arm 0's draw ~ N(50/51, 0.07^2) vs arm 1's ~ N(0, 0.07^2)
    sels = [bandit.select(E1) for _ in range(20)]
    assert all(s.arm == 0 and s.propensity == 1.0 for s in sels)
    xs, rs = stream(40, d=2, seed=5)
    noisy = LinTS(3, v=1.0, seed=2, propensity_samples=16)
    for x, r in zip(xs, rs, strict=True):
        sel = noisy.select(x)
        assert 1 / 17 <= sel.propensity <= 1.0  # never 0: the choosing draw counts
        noisy.update(sel, x, r)


def test_epsilon_schedule_hand_values() -> None:
    assert epsilon_schedule(0, 0.2, 0.99, 0.01) == pytest.approx(0.2)
    assert epsilon_schedule(1, 0.2, 0.99, 0.01) == pytest.approx(0.198)
    assert epsilon_schedule(10, 0.2, 0.99, 0.01) == pytest.approx(0.2 * 0.9043820750088044)  # 0.99**10
    assert epsilon_schedule(1000, 0.2, 0.99, 0.01) == 0.01  # 0.2 * 0.99**1000 = 8.6e-6 < floor
    bandit = EpsilonGreedy(3)
    for _ in range(10):
        bandit.select(E1)
    assert bandit.epsilon == pytest.approx(0.2 * 0.9043820750088044)


def test_epsilon_greedy_propensities_hand_values_and_sum_to_one() -> None:
    bandit = EpsilonGreedy(3, eps0=0.3, decay=1.0)
    pull(bandit, 1, E1, 1.0)  # arm 1 estimates 1/2 at e1, the others 0: arm 1 is the greedy arm
    probs = bandit.probabilities(E1)
    torch.testing.assert_close(probs, torch.tensor([0.1, 0.8, 0.1], dtype=F64))
    assert bandit.probabilities(E2).tolist() == pytest.approx([1 / 3] * 3)  # all tie at e2
    for x in stream(30, d=2)[0]:
        probs = bandit.probabilities(x)
        sel = bandit.select(x)
        assert float(probs.sum()) == pytest.approx(1.0) and sel.propensity == pytest.approx(
            float(probs[sel.arm])
        )
    arms = [bandit.select(E1).arm for _ in range(3000)]
    assert 500 < 3000 - arms.count(1) < 700  # 0.3 * 2/3 = 20% off-greedy, sd ~22 picks


def test_discounted_linucb_hand_example_discounts_every_arm() -> None:
    bandit = DiscountedLinUCB(2, alpha=1.0, gamma=0.5, ridge_lambda=1.0)
    pull(bandit, 1, E2, 1.0)  # V1 = diag(1, 2), b1 = (0, 1); Vt1 = diag(1, 2)
    pull(bandit, 0, E1, 0.5)  # V0 = diag(2, 1), b0 = (.5, 0); arm 1 decays: V1 = diag(1, 1.5), b1 = (0, .5)
    pull(bandit, 0, torch.tensor([1.0, 1.0]), 1.0)
    # V0 = .5 diag(2,1) + .5 I + 11^T; b0 = (.25, 0) + (1, 1). Arm 1: V1 = diag(1, 1.25), b1 = (0, .25).
    # Vt (gamma^2 = .25): Vt0 = .25 diag(2,1) + .75 I + 11^T; Vt1 = .25 diag(1, 1.25) + .75 I.
    V = torch.tensor([[[2.5, 1.0], [1.0, 2.0]], [[1.0, 0.0], [0.0, 1.25]]], dtype=F64)
    Vt = torch.tensor([[[2.25, 1.0], [1.0, 2.0]], [[1.0, 0.0], [0.0, 1.0625]]], dtype=F64)
    b = torch.tensor([[1.25, 1.0], [0.0, 0.25]], dtype=F64)
    torch.testing.assert_close(bandit.ridge.A, V)
    torch.testing.assert_close(bandit.ridge.b, b)
    torch.testing.assert_close(bandit.V_tilde, Vt)
    torch.testing.assert_close(bandit.ridge.A_inv, torch.linalg.inv(V), atol=1e-12, rtol=0)
    sel = bandit.select(E1)
    Vinv = torch.linalg.inv(V)
    want_est = [float(Vinv[k] @ b[k] @ E1.double()) for k in range(2)]
    want_bonus = [math.sqrt(float(E1.double() @ Vinv[k] @ Vt[k] @ Vinv[k] @ E1.double())) for k in range(2)]
    assert sel.info["estimates"] == pytest.approx(want_est, abs=1e-12)
    assert sel.info["bonuses"] == pytest.approx(want_bonus, abs=1e-12)
    assert bandit.ridge.counts == [2, 1]


def test_discounted_linucb_matches_a_hand_rolled_loop() -> None:
    xs, rs = stream(25)
    gamma, lam = 0.8, 0.5
    bandit = DiscountedLinUCB(3, gamma=gamma, ridge_lambda=lam)
    eye = torch.eye(3, dtype=F64)
    V, Vt, b = lam * eye.repeat(3, 1, 1), lam * eye.repeat(3, 1, 1), torch.zeros(3, 3, dtype=F64)
    for t, (x, r) in enumerate(zip(xs, rs, strict=True)):
        k, x = (t * 2) % 3, x.double()
        pull(bandit, k, x, r)
        V, b = gamma * V + (1 - gamma) * lam * eye, gamma * b  # every arm, every step
        Vt = gamma**2 * Vt + (1 - gamma**2) * lam * eye
        V[k], Vt[k], b[k] = V[k] + torch.outer(x, x), Vt[k] + torch.outer(x, x), b[k] + r * x
    torch.testing.assert_close(bandit.ridge.A, V, atol=1e-12, rtol=0)
    torch.testing.assert_close(bandit.V_tilde, Vt, atol=1e-12, rtol=0)
    torch.testing.assert_close(bandit.ridge.b, b, atol=1e-12, rtol=0)
    torch.testing.assert_close(bandit.ridge.A_inv, torch.linalg.inv(V), atol=1e-10, rtol=0)


def test_discounted_linucb_with_gamma_1_is_linucb() -> None:
    xs, rs = stream(60)
    plain = LinUCB(3, alpha=0.4, ridge_lambda=0.8, seed=3)
    discounted = DiscountedLinUCB(3, alpha=0.4, gamma=1.0, ridge_lambda=0.8, seed=3)
    for x, r in zip(xs, rs, strict=True):
        a, b = plain.select(x), discounted.select(x)
        assert a.arm == b.arm
        assert a.info["estimates"] == pytest.approx(b.info["estimates"], abs=1e-9)
        assert a.info["bonuses"] == pytest.approx(b.info["bonuses"], abs=1e-9)
        plain.update(a, x, r)
        discounted.update(b, x, r)


def test_discounted_linucb_adapts_to_drift_faster_than_linucb() -> None:
    # Arm 0 pays 1 for 80 batches, then arm 1 does. Count arm-1 picks in the 40 batches after the switch.
    def after_switch(bandit: Selector) -> int:
        arms = []
        for t in range(120):
            sel = bandit.select(E1)
            bandit.update(sel, E1, 1.0 if sel.arm == (0 if t < 80 else 1) else 0.0)
            arms.append(sel.arm)
        assert arms[10:80].count(0) == 70  # both learn the first phase
        return arms[80:].count(1)

    assert after_switch(LinUCB(2, alpha=0.5)) <= 5  # still trusting 80 old rewards
    assert after_switch(DiscountedLinUCB(2, alpha=0.5, gamma=0.9)) >= 25


# ---- Options every ridge selector shares -----------------------------------------------------------------


# every bandit yaml with the option (conf/bandit/*.yaml): a new one is picked up here without a list to edit
RESETTABLE = sorted(p.stem for p in Path(CONF_DIR, "bandit").glob("*.yaml")
                    if "reset_each_iteration" in OmegaConf.load(p))


@pytest.mark.parametrize("name", RESETTABLE)
def test_reset_each_iteration_clears_state(name: str) -> None:
    def make(reset: bool) -> Selector:
        cfg = compose_config([f"bandit={name}", f"bandit.reset_each_iteration={reset}"])
        return instantiate(cfg.bandit, num_arms=3, arm_names=["a", "b", "c"], _convert_="all")

    xs, rs = stream(12)
    kept, reset = make(False), make(True)
    for bandit in (kept, reset):
        for t, (x, r) in enumerate(zip(xs, rs, strict=True)):
            pull(bandit, t % 3, x, r)
        bandit.on_iteration_end(1)
    assert kept.ridge.counts == [4, 4, 4] and reset.ridge.counts == [0, 0, 0]
    torch.testing.assert_close(reset.ridge.A, torch.eye(3, dtype=F64).repeat(3, 1, 1))
    assert torch.equal(reset.ridge.b, torch.zeros(3, 3, dtype=F64))
    assert not torch.equal(kept.ridge.b, reset.ridge.b)


def test_linucb_yaml_explores_at_the_embedded_scale_and_the_paper_experiments_at_the_papers() -> None:
    selector = instantiate(compose_config(["bandit=linucb"]).bandit, num_arms=2, arm_names=["a", "b"], _convert_="all")
    assert isinstance(selector, LinUCB) and selector.arm_names == ["a", "b"]
    assert (selector.alpha, selector.ridge_lambda) == (1.0, 1.0)  # embedded scale; experiments set 0.1
    assert selector.reset_each_iteration is False
    paper = compose_config(["+experiment=gsm8k"]).bandit
    assert (paper.alpha, paper.ridge_lambda) == (0.1, 1.0)
