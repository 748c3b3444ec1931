"""The shared ridge state and the linear bandits built on it (LinTS, epsilon-greedy, D-LinUCB), checked
against direct solves, hand-rolled loops and hand-computed values."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from laser.config.instantiate import instantiate
from laser.selection.base import Selection, Selector
from laser.selection.discounted_linucb import DiscountedLinUCB
from laser.selection.eps_greedy import EpsilonGreedy, epsilon_schedule
from laser.selection.lints import LinTS
from laser.selection.linucb import LinUCB
from laser.selection.ridge import RidgeArms

E1, E2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
F64 = torch.float64
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


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


# --- RidgeArms -------------------------------------------------------------------------------------------


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


def test_linucb_diagnostics_hand_values() -> None:
    # The hand example of test_bandits: theta0 = (1/2, 0), A0^-1 = diag(1/2, 1); arm 1 never saw e1.
    bandit = LinUCB(2, ["a", "b"], alpha=1.0)
    assert bandit.diagnostics() == {"count/a": 0.0, "count/b": 0.0}
    pull(bandit, 0, E1, 1.0)
    pull(bandit, 1, E2, 0.5)
    bandit.select(E1)
    want = {"count/a": 1, "count/b": 1, "estimate/a": 0.5, "estimate/b": 0, "bonus/a": 0.5**0.5, "bonus/b": 1}
    assert bandit.diagnostics() == pytest.approx(want, abs=1e-12)


# --- LinTS -----------------------------------------------------------------------------------------------


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


# --- epsilon-greedy --------------------------------------------------------------------------------------


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


# --- D-LinUCB --------------------------------------------------------------------------------------------


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


# --- Shared behaviour ------------------------------------------------------------------------------------

FACTORIES: dict[str, Callable[..., Selector]] = {
    "linucb": lambda **kw: LinUCB(3, alpha=0.3, **kw),
    "lints": lambda **kw: LinTS(3, v=0.5, **kw),
    "eps_greedy": lambda **kw: EpsilonGreedy(3, eps0=0.5, decay=0.97, **kw),
    "discounted_linucb": lambda **kw: DiscountedLinUCB(3, alpha=0.3, gamma=0.9, **kw),
}


@pytest.mark.parametrize("name", ["linucb", "lints", "eps_greedy"])
def test_reset_each_iteration_clears_state(name: str) -> None:
    xs, rs = stream(12)
    kept, reset = FACTORIES[name](reset_each_iteration=False), FACTORIES[name](reset_each_iteration=True)
    for bandit in (kept, reset):
        for t, (x, r) in enumerate(zip(xs, rs, strict=True)):
            pull(bandit, t % 3, x, r)
        bandit.on_iteration_end(1)
    assert kept.ridge.counts == [4, 4, 4] and reset.ridge.counts == [0, 0, 0]
    torch.testing.assert_close(reset.ridge.A, torch.eye(3, dtype=F64).repeat(3, 1, 1))
    assert torch.equal(reset.ridge.b, torch.zeros(3, 3, dtype=F64))
    assert not torch.equal(kept.ridge.b, reset.ridge.b)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_state_dict_round_trip_gives_same_next_20_choices(name: str) -> None:
    xs, rs = stream(50)

    def step(bandit: Selector, t: int) -> int:
        sel = bandit.select(xs[t])
        bandit.update(sel, xs[t], rs[t])
        return sel.arm

    original = FACTORIES[name](seed=5)
    for t in range(30):
        step(original, t)
    buf = io.BytesIO()
    torch.save(original.state_dict(), buf)
    buf.seek(0)
    restored = FACTORIES[name](seed=999)
    restored.load_state_dict(torch.load(buf, weights_only=True))
    assert [step(original, t) for t in range(30, 50)] == [step(restored, t) for t in range(30, 50)]


YAMLS = {"linucb": LinUCB, "lints": LinTS, "eps_greedy": EpsilonGreedy, "discounted_linucb": DiscountedLinUCB}


@pytest.mark.parametrize("name, cls", YAMLS.items())
def test_yaml_composes_and_builds(name: str, cls: type) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"bandit={name}"]).bandit
    assert "num_arms" not in cfg and "arm_names" not in cfg and cfg.granularity == "batch"
    selector = instantiate(cfg, num_arms=3, arm_names=["a", "b", "c"], _convert_="all")
    assert isinstance(selector, cls) and selector.arm_names == ["a", "b", "c"]
    sel = selector.select(torch.tensor([1.0, 0.0, 0.0]))
    selector.update(sel, torch.tensor([1.0, 0.0, 0.0]), 0.5)
    assert sel.arm in (0, 1, 2) and set(selector.diagnostics()) >= {"count/a", "count/b", "count/c"}
