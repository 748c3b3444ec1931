"""Baseline selectors (random, single RM, Thompson, EXP3, ensembles, sequential, oracle) against
hand-computed values."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import CONF_DIR, compose_config

from laser.config.instantiate import instantiate
from laser.selection.agreement_ensemble import AgreementEnsemble
from laser.selection.base import Selection, StepFeedback
from laser.selection.exp3 import EXP3
from laser.selection.online_ensemble import OnlineEnsemble
from laser.selection.random_choice import RandomSelector
from laser.selection.score_ensemble import ScoreEnsemble
from laser.selection.sequential import SequentialRMs
from laser.selection.single import SingleRM
from laser.selection.thompson import GaussianThompson

X = torch.ones(4)  # a context; these selectors ignore it
E1 = torch.tensor([1.0, 0.0])


def t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# ---- Random and single RM --------------------------------------------------------------------------------


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


# ---- Thompson and EXP3 -----------------------------------------------------------------------------------


def test_thompson_posterior_by_hand() -> None:
    # Prior precision 1/0.5^2 = 4, noise precision 1/0.25^2 = 16.
    ts = GaussianThompson(2, ["a", "b"], sigma=0.25, prior_mean=0.5, prior_std=0.5)
    ts.update(Selection(arms=(0,)), X, 1.0)  # precision 20, mean (4*0.5 + 16*1) / 20 = 0.9
    means, stds = ts.posterior()
    assert means.tolist() == pytest.approx([0.9, 0.5]) and stds.tolist() == pytest.approx([20**-0.5, 0.5])
    ts.update(Selection(arms=(0,)), X, 0.5)  # precision 36, mean (2 + 16*1.5) / 36 = 13/18
    diag = ts.diagnostics()
    assert diag["posterior_mean/a"] == pytest.approx(13 / 18) and diag["posterior_std/a"] == pytest.approx(1 / 6)
    assert diag["posterior_mean/b"] == 0.5
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ts.update(Selection(arms=(1,)), X, 1.5)


def test_thompson_seeded_choices_and_monte_carlo_propensity() -> None:
    def arms(seed: int, samples: int = 1000) -> list[int]:
        ts = GaussianThompson(3, seed=seed, propensity_samples=samples)
        return [ts.select(X).arm for _ in range(40)]

    assert arms(0) == arms(0) and arms(0) != arms(1)
    assert arms(0, samples=0) == arms(0)  # the propensity draws use their own stream
    # Arm 0 posterior N(0.9, 1/20), arm 1 the prior N(0.5, 1/4): P(0 wins) = Phi(0.4 / sqrt(0.3)).
    ts = GaussianThompson(2, propensity_samples=20000)
    ts.update(Selection(arms=(0,)), X, 1.0)
    p0 = 0.5 * (1 + math.erf(0.4 / math.sqrt(0.3) / math.sqrt(2)))
    sel = ts.select(X)
    assert sel.propensity == pytest.approx(p0 if sel.arm == 0 else 1 - p0, abs=0.02)
    assert GaussianThompson(2, propensity_samples=0).select(X).propensity is None


def test_exp3_probabilities_and_weights_by_hand() -> None:
    bandit = EXP3(2, ["a", "b"], gamma=0.1)
    sel = bandit.select(X)
    assert sel.propensity == 0.5 and bandit.probabilities().tolist() == [0.5, 0.5]
    # Arm 0, r=1, p=0.5: xhat = 2, log w0 += 0.1 * 2 / 2 = 0.1.
    bandit.update(Selection(arms=(0,), propensity=0.5), X, 1.0)
    e = math.exp(0.1)
    p0 = 0.9 * e / (e + 1) + 0.05
    assert bandit.log_weights.tolist() == pytest.approx([0.1, 0.0])
    assert bandit.diagnostics()["prob/a"] == pytest.approx(p0) and bandit.probabilities()[1] == pytest.approx(1 - p0)
    # Arm 1, r=0.5 at its probability 1 - p0: log w1 += 0.1 * (0.5 / (1 - p0)) / 2.
    bandit.update(Selection(arms=(1,)), X, 0.5)  # no propensity given: uses the current p1
    lw1 = 0.1 * (0.5 / (1 - p0)) / 2
    assert bandit.log_weights.tolist() == pytest.approx([0.1, lw1])
    w0, w1 = math.exp(0.1), math.exp(lw1)
    assert bandit.probabilities().tolist() == pytest.approx([0.9 * w0 / (w0 + w1) + 0.05, 0.9 * w1 / (w0 + w1) + 0.05])


def test_exp3_samples_its_distribution_and_log_weights_do_not_overflow() -> None:
    bandit = EXP3(2, gamma=0.2, seed=3)
    bandit.log_weights[:] = [0.0, math.log(3.0)]  # p = 0.8 * (1/4, 3/4) + 0.1 = (0.3, 0.7)
    draws = [bandit.select(X) for _ in range(4000)]
    assert sum(s.arm for s in draws) / 4000 == pytest.approx(0.7, abs=0.03)
    assert {round(s.propensity, 9) for s in draws} == {0.3, 0.7}
    for _ in range(5000):  # raw weights would reach exp(2500)
        bandit.update(Selection(arms=(0,), propensity=0.1), X, 1.0)
    assert bandit.probabilities().tolist() == pytest.approx([0.9, 0.1])


# ---- Ensembles and sequential ----------------------------------------------------------------------------


def test_score_ensemble_zscores_each_rm_before_averaging() -> None:
    ens = ScoreEnsemble(3)
    assert ens.select(X) == Selection(arms=(0, 1, 2), propensity=None)
    # RM0 [0, 10] -> [-1, 1]; RM1 [0.2, 0.1] -> [1, -1]: opposite votes of 100x different scale cancel.
    assert ens.combine({0: t([0.0, 10.0]), 1: t([0.2, 0.1])}).flatten().tolist() == pytest.approx([0.0, 0.0])
    # A constant RM (even one whose float mean rounds) contributes zeros: the average is RM0's z-score / 2.
    out = ens.combine({0: t([0.0, 10.0]), 1: t([7.0, 7.0]), 2: t([0.1, 0.1])})
    assert out.shape == (1, 2) and out.dtype == torch.float32 and out[0].tolist() == pytest.approx([-1 / 3, 1 / 3])
    assert torch.isnan(ens.combine({0: t([0.0, 1.0]), 1: t([float("nan"), 1.0])})).all()  # a failed RM shows


SCORES3 = {0: t([3, 2, 1], [0, 5, 0]), 1: t([3, 1, 2], [0, 5, 0]), 2: t([1, 2, 3], [0, 5, 0])}
PAIRS = [(0, 0, 1), (0, 0, 2), (0, 1, 2), (1, 1, 0), (1, 0, 1), (1, 0, 2)]  # votes 2, 2, 1, 3, 0, tie(0)


def test_agreement_filter_needs_a_strict_majority() -> None:
    ens = AgreementEnsemble(3)
    assert ens.filter_pairs(PAIRS, SCORES3) == [(0, 0, 1), (0, 0, 2), (1, 1, 0)]
    assert ens.diagnostics() == {"pairs_kept_fraction": 0.5}
    two = {0: SCORES3[0], 1: SCORES3[1]}  # K=2: both must agree; (0, 1, 2) is 1 of 2
    assert AgreementEnsemble(2).filter_pairs(PAIRS, two) == [(0, 0, 1), (0, 0, 2), (1, 1, 0)]
    assert AgreementEnsemble(2).filter_pairs([(0, 1, 2)], two) == []
    assert AgreementEnsemble(3, min_agreement=0.0).filter_pairs(PAIRS, SCORES3) == PAIRS[:4]
    assert AgreementEnsemble(3).filter_pairs([], SCORES3) == []
    assert ens.combine({0: t([0.0, 10.0]), 1: t([0.2, 0.1])}).flatten().tolist() == pytest.approx([0.0, 0.0])


def test_online_ensemble_hedge_update_by_hand() -> None:
    ens = OnlineEnsemble(2, ["a", "b"], eta=0.5)
    scores = {0: t([3, 2, 1]), 1: t([1, 2, 3])}
    ens.update(ens.select(X), X, 0.75)  # no feedback: nothing learnt
    ens.update(ens.select(X), X, 0.75, StepFeedback(scores=scores, pairs=[]))
    assert ens.weights == [0.5, 0.5]
    # a = (1, 0); g0 = 0.75 * 1 + 0.25 * 0 = 0.75, g1 = 0.75 * 0 + 0.25 * 1 = 0.25; w ∝ exp(0.5 * g).
    ens.update(ens.select(X), X, 0.75, StepFeedback(scores=scores, pairs=[(0, 0, 1), (0, 0, 2)]))
    w0 = math.exp(0.375) / (math.exp(0.375) + math.exp(0.125))
    assert ens.diagnostics() == pytest.approx({"weight/a": w0, "weight/b": 1 - w0})
    # Combine: w0 * [-1, 1] + w1 * [1, -1].
    assert ens.combine({0: t([0.0, 10.0]), 1: t([0.2, 0.1])})[0].tolist() == pytest.approx([1 - 2 * w0, 2 * w0 - 1])


def test_sequential_schedule_blocks_of_iterations_then_wraps() -> None:
    seq, arms = SequentialRMs(3, iterations_per_arm=2), []
    for iteration in range(1, 8):
        arms.append(seq.select(X).arm)
        assert seq.select(X).propensity == 1.0  # every batch of an iteration gets the same arm
        seq.on_iteration_end(iteration)
    assert arms == [0, 0, 1, 1, 2, 2, 0]


# ---- Configs of the single-RM rows -----------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(Path(CONF_DIR, "bandit").glob("single_*.yaml")), ids=lambda p: p.stem)
def test_single_k_rows_fix_arm_k(path: Path) -> None:
    """conf/bandit/single_<k>.yaml: the single-RM row of pool arm k (composed with a 4-RM pool)."""
    cfg = compose_config([f"bandit={path.stem}", "rm_pool=reasoning_7b"])
    names = list(cfg.rm_pool.models)
    selector = instantiate(cfg.bandit, num_arms=len(names), arm_names=names, _convert_="all")
    k = int(path.stem.split("_")[1])
    assert isinstance(selector, SingleRM) and selector.fixed_arm == k and selector.select(X).arm == k


@pytest.mark.parametrize("pool", ["tiny", "reasoning_7b"])
def test_bandit_oracle_adds_the_verifier_arm_and_selects_it(pool: str) -> None:
    base = compose_config([f"rm_pool={pool}"])
    cfg = compose_config([f"rm_pool={pool}", "bandit=oracle"])
    names = list(cfg.rm_pool.models)
    assert names == list(base.rm_pool.models) + ["oracle"]
    assert cfg.rm_pool.models.oracle._target_ == "laser.rewards.verifier.VerifierRM"
    selector = instantiate(cfg.bandit, num_arms=len(names), arm_names=names, _convert_="all")
    assert isinstance(selector, SingleRM) and selector.select(X).arm == len(names) - 1
    assert cfg.bandit.granularity == "batch"  # the shared selector options are composed in
