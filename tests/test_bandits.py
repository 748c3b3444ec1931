"""Bandits, baselines and the reward normaliser, checked against hand-computed values."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from laser.config.instantiate import instantiate
from laser.selection.base import Selection
from laser.selection.linucb import LinUCB, ucb_scores
from laser.selection.normaliser import QuantileNormaliser
from laser.selection.random_choice import RandomSelector
from laser.selection.ridge import sherman_morrison_update
from laser.selection.single import SingleRM

E1, E2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
CONF = Path(__file__).resolve().parents[1] / "conf" / "bandit"


def pull(bandit: LinUCB, arm: int, x: torch.Tensor, reward: float) -> None:
    bandit.update(Selection(arms=(arm,)), x, reward)


# --- LinUCB maths -------------------------------------------------------------------------------------


def test_sherman_morrison_matches_exact_inverse_after_50_updates() -> None:
    gen = torch.Generator().manual_seed(0)
    d, lam = 6, 0.5
    A, A_inv = lam * torch.eye(d, dtype=torch.float64), torch.eye(d, dtype=torch.float64) / lam
    for _ in range(50):
        x = torch.randn(d, generator=gen, dtype=torch.float64)
        A += torch.outer(x, x)
        A_inv = sherman_morrison_update(A_inv, x)
    torch.testing.assert_close(A_inv, torch.linalg.inv(A), atol=1e-9, rtol=0)


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


def test_incremental_inverse_tracks_A_and_refresh_inverse() -> None:
    gen = torch.Generator().manual_seed(1)
    bandit = LinUCB(3, ridge_lambda=2.0)
    for t in range(60):
        pull(bandit, t % 3, torch.randn(4, generator=gen), float(torch.rand(1, generator=gen)))
    torch.testing.assert_close(bandit.A_inv, torch.linalg.inv(bandit.A), atol=1e-9, rtol=0)
    assert bandit.counts == [20, 20, 20] and bandit.A.dtype == torch.float64
    bandit.refresh_inverse()
    torch.testing.assert_close(bandit.A_inv, torch.linalg.inv(bandit.A), atol=1e-12, rtol=0)


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


# --- Quantile normaliser ------------------------------------------------------------------------------


def test_normaliser_hand_values_and_clipping() -> None:
    # History after each call (sorted), linear-interpolated 20th/80th percentiles, (raw - lo)/(hi - lo):
    #   [-1] no spread -> default 0.5; [-1,1]: lo=-0.6, hi=0.6, raw 1 -> 1.33 clipped to 1;
    #   [-1,0,1]: lo=-0.6, hi=0.6 -> 0.5; [-1,-.5,0,1]: lo=-0.7, hi=0.4, raw -0.5 -> 0.2/1.1;
    #   [-1,-.5,0,.5,1]: lo=-0.6, hi=0.6, raw 0.5 -> 1.1/1.2; then raw -10: lo=-1 -> clipped to 0.
    norm = QuantileNormaliser()
    got = [norm(r) for r in [-1.0, 1.0, 0.0, -0.5, 0.5, -10.0]]
    assert got == pytest.approx([0.5, 1.0, 0.5, 0.2 / 1.1, 1.1 / 1.2, 0.0], abs=1e-12)


def test_normaliser_constant_rewards_stay_default() -> None:
    norm = QuantileNormaliser(default=0.25)
    assert [norm(-0.69) for _ in range(4)] == [0.25] * 4


def test_normaliser_window_forgets_old_rewards() -> None:
    # window=3: [10,5,6] -> lo=5.4, hi=8.4, raw 6 -> 0.2. Unwindowed [0,10,5,6]: lo=3, hi=7.6 -> 3/4.6.
    windowed, full = QuantileNormaliser(window=3), QuantileNormaliser()
    for r in [0.0, 10.0, 5.0]:
        windowed(r), full(r)
    assert windowed(6.0) == pytest.approx(0.2) and full(6.0) == pytest.approx(3 / 4.6)
    assert windowed.state_dict() == {"history": [10.0, 5.0, 6.0]}


def test_normaliser_state_round_trip() -> None:
    a = QuantileNormaliser(window=4)
    for r in [0.3, -0.2, 0.9, 0.1, 0.4]:
        a(r)
    b = QuantileNormaliser(window=4)
    b.load_state_dict(a.state_dict())
    assert a(0.25) == b(0.25)


@pytest.mark.parametrize("low, high", [(0.8, 0.2), (0.5, 0.5), (-0.1, 0.8), (0.2, 1.5)])
def test_normaliser_rejects_bad_quantiles(low: float, high: float) -> None:
    with pytest.raises(ValueError, match=f"low_quantile={low}, high_quantile={high}"):
        QuantileNormaliser(low, high)


@pytest.mark.parametrize("raw", [float("nan"), float("inf")])
def test_normaliser_rejects_non_finite(raw: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        QuantileNormaliser()(raw)


# --- Baselines ----------------------------------------------------------------------------------------


def test_random_selector_uniform_and_seeded() -> None:
    selector = RandomSelector(3, seed=0)
    sels = [selector.select(E1) for _ in range(3000)]
    arms = [s.arm for s in sels]
    assert all(900 < arms.count(k) < 1100 for k in range(3))  # 1000 expected, sd ~26
    assert all(s.propensity == pytest.approx(1 / 3) for s in sels)
    again = RandomSelector(3, seed=0)
    assert [again.select(E1).arm for _ in range(50)] == arms[:50]
    other = RandomSelector(3, seed=1)
    assert [other.select(E1).arm for _ in range(50)] != arms[:50]
    resumed = RandomSelector(3, seed=7)
    resumed.load_state_dict(again.state_dict())
    assert [resumed.select(E1).arm for _ in range(50)] == arms[50:100]


def test_single_rm_by_name_and_index() -> None:
    names = ["skywork", "armo", "qrm"]
    assert SingleRM(3, names, arm="armo").select(E1) == Selection(arms=(1,), propensity=1.0)
    assert SingleRM(3, names, arm=2).select(E1).arm == 2
    with pytest.raises(ValueError, match=r"'nope'.*\['skywork', 'armo', 'qrm'\]"):
        SingleRM(3, names, arm="nope")
    with pytest.raises(ValueError, match=r"0\.\.2"):
        SingleRM(3, names, arm=3)


# --- Configs ------------------------------------------------------------------------------------------


def compose_bandit(name: str) -> DictConfig:
    """The `bandit` node as `python -m laser.run bandit=<name>` composes it (its `defaults` list pulls in
    conf/selector_options, so loading the yaml alone would not be the real config)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF.parent), version_base="1.3"):
        return compose(config_name="config", overrides=[f"bandit={name}"]).bandit


@pytest.mark.parametrize("name, cls", [("linucb", LinUCB), ("random", RandomSelector), ("single", SingleRM)])
def test_bandit_yamls_instantiate_with_pool_supplied_by_caller(name: str, cls: type) -> None:
    assert "num_arms" not in OmegaConf.load(CONF / f"{name}.yaml")  # the pool supplies these
    assert "arm_names" not in OmegaConf.load(CONF / f"{name}.yaml")
    cfg = compose_bandit(name)
    assert cfg.granularity == "batch" and "context" not in cfg  # the shared selector option; context is its own group
    selector = instantiate(cfg, num_arms=2, arm_names=["a", "b"], _convert_="all")
    assert isinstance(selector, cls) and selector.arm_names == ["a", "b"]
    assert selector.select(E1).arm in (0, 1)
    if name == "linucb":
        assert (selector.alpha, selector.ridge_lambda) == (1.0, 1.0)  # embedded scale; experiments set 0.1
        assert selector.reset_each_iteration is False
