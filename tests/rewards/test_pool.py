"""The RM pool: only the chosen RMs run, counted (calls, tokens, faults); where it keeps its RMs'
weights; an RM that raises, hangs or miscounts becomes a named `RewardModelError`; its yamls."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from conftest import CONF_DIR
from hydra.utils import instantiate
from omegaconf import OmegaConf
from rm_fakes import CountingRM, ScriptedRM, make_batch

from laser.errors import LaserConfigError
from laser.rewards.base import RewardModel, ScoringBatch
from laser.rewards.errors import RewardModelError, RewardOutputError
from laser.rewards.noisy import NoisyRM
from laser.rewards.pool import RewardModelPool
from laser.rewards.verifier import VerifierRM
from laser.tasks.base import Example


def test_pool_runs_only_the_chosen_rm_and_counts_it():
    fakes = {"a": CountingRM(), "b": CountingRM(), "c": CountingRM()}
    pool = RewardModelPool(fakes, device="meta")
    assert pool.names == ["a", "b", "c"] and len(pool) == 3 and fakes["b"].name == "b"
    batch = make_batch(["addition"] * 4)
    out = pool.score([1], batch)
    assert list(out) == [1] and out[1].dtype == torch.float32 and out[1].tolist() == [2.0, 3.0, 4.0, 5.0]
    pool.score([1, 2, 1], batch)  # a repeated arm still runs once
    assert [f.batches_seen for f in fakes.values()] == [0, 2, 1]
    assert [f.moved_to for f in fakes.values()] == [[], ["meta"], ["meta"]]  # placed once, on first use
    assert pool.call_counts() == {"a": 0, "b": 8, "c": 4}
    counters = pool.counters()
    assert counters["b"]["batches"] == 2 and counters["b"]["seconds"] >= 0.0 and counters["a"]["calls"] == 0


def test_pool_counts_pure_noise_arm_without_running_its_base():
    base = CountingRM()
    pool = RewardModelPool({"noise": NoisyRM(base, corrupt_prob=1.0)})
    pool.score([0], make_batch(["addition"] * 6))
    assert pool.call_counts() == {"noise": 6} and base.items_seen == 0


def test_pool_rejects_wrong_length_output_naming_the_rm():
    pool = RewardModelPool({"good": CountingRM(), "short": CountingRM(drop_last=True)})
    with pytest.raises(RewardOutputError, match=r"'short'.*\(2,\).*\(3,\)"):
        pool.score([1], make_batch(["addition"] * 3))


def test_pool_unknown_name_lists_the_names():
    pool = RewardModelPool({"a": CountingRM(), "b": CountingRM()})
    assert pool.index("b") == 1
    with pytest.raises(LaserConfigError, match=r"'zzz'.*\['a', 'b'\]"):
        pool.index("zzz")


def test_pool_state_dict_round_trip_restores_counters_and_rm_rng():
    def build() -> RewardModelPool:
        return RewardModelPool({"n": NoisyRM(CountingRM(), corrupt_prob=0.5, seed=4), "c": CountingRM()})

    batch = make_batch(["addition"] * 10)
    pool = build()
    pool.score([0, 1], batch)
    state = pool.state_dict()
    expected = pool.score([0], batch)[0]
    resumed = build()
    resumed.load_state_dict(state)
    assert resumed.call_counts() == {"n": 10, "c": 10}
    assert torch.equal(resumed.score([0], batch)[0], expected)


def test_pool_yamls_instantiate_without_loading_weights():
    pool = instantiate(OmegaConf.load(Path(CONF_DIR, "rm_pool") / "tiny.yaml"))
    assert pool.names == ["arith_judge", "compare_judge", "noise"]
    batch = make_batch(["addition", "comparison"] * 200)
    scores = pool.score([0, 1], batch)
    assert (scores[0][0::2] == 1.0).float().mean() > 0.9  # arith_judge: right on addition
    assert (scores[1][1::2] == 1.0).float().mean() > 0.9  # compare_judge: right on comparison
    assert (scores[0][1::2] == 1.0).float().mean() < 0.1  # ... and noise elsewhere
    big = instantiate(OmegaConf.load(Path(CONF_DIR, "rm_pool") / "reasoning_7b.yaml"))
    assert big.names == ["zephyr_7b_alpha", "qwen15_7b_chat", "eurus_7b_kto", "olmo_7b_instruct"]
    assert all(big[arm].model is None for arm in range(len(big)))  # nothing loaded yet
    assert instantiate(OmegaConf.load(Path(CONF_DIR, "rm_pool") / "oracle.yaml")).names == ["oracle"]


# ---- token accounting ------------------------------------------------------------------------------------


def test_a_checkpoint_from_before_token_and_fault_counters_still_loads():
    pool = RewardModelPool({"a": VerifierRM(), "b": VerifierRM()})
    old_counters = {"calls": 5.0, "batches": 1.0, "seconds": 0.5}  # no "tokens", no "faults"
    old = {"counters": {"a": old_counters, "b": old_counters}, "models": {}}
    pool.load_state_dict(old)
    assert pool.call_counts() == {"a": 5, "b": 5} and pool.token_counts() == {"a": 0, "b": 0}
    assert pool.counters()["a"]["faults"] == 0


# ---- placement: where the RMs' weights live --------------------------------------------------------------


class PlacedRM(RewardModel):
    """Records every move and where it was when it scored."""

    def __init__(self, log: list[tuple[str, str]]) -> None:
        super().__init__()
        self.log, self.device = log, "cpu"

    def to(self, device):
        self.device = str(device)
        self.log.append((self.name, f"to {device}"))
        return self

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        self.log.append((self.name, f"score on {self.device}"))
        return torch.zeros(len(batch))


def placed_pool(placement: str) -> tuple[RewardModelPool, list[tuple[str, str]]]:
    log: list[tuple[str, str]] = []
    return RewardModelPool({k: PlacedRM(log) for k in "abcd"}, device="meta", placement=placement), log


def test_resident_placement_moves_each_rm_once_and_keeps_it():
    pool, log = placed_pool("resident")
    for arm in (0, 1, 0, 1):
        pool.score([arm], make_batch(["addition"] * 2))
    assert log == [("a", "to meta"), ("a", "score on meta"), ("b", "to meta"), ("b", "score on meta"),
                   ("a", "score on meta"), ("b", "score on meta")]
    assert [pool[i].device for i in range(4)] == ["meta", "meta", "cpu", "cpu"]


def test_offload_placement_keeps_only_the_scoring_rm_on_the_device():
    pool, log = placed_pool("offload")
    pool.score([0], make_batch(["addition"] * 2))
    pool.score([1, 2], make_batch(["addition"] * 2))  # an ensemble call: one at a time
    assert log == [("a", "to meta"), ("a", "score on meta"), ("a", "to cpu"),
                   ("b", "to meta"), ("b", "score on meta"), ("b", "to cpu"),
                   ("c", "to meta"), ("c", "score on meta"), ("c", "to cpu")]
    assert [pool[i].device for i in range(4)] == ["cpu"] * 4


def test_offload_moves_an_rm_back_even_when_it_fails():
    pool, log = placed_pool("offload")
    pool[0].score = lambda batch: 1 / 0  # type: ignore[method-assign]
    with pytest.raises(Exception, match="ZeroDivisionError"):
        pool.score([0], make_batch(["addition"] * 2))
    assert log == [("a", "to meta"), ("a", "to cpu")] and pool[0].device == "cpu"


def test_an_unplanned_auto_placement_offloads():
    pool, log = placed_pool("auto")  # the memory plan resolves auto before a run; a bare pool plays safe
    pool.score([0], make_batch(["addition"] * 2))
    assert log == [("a", "to meta"), ("a", "score on meta"), ("a", "to cpu")]


def test_an_unknown_placement_lists_the_choices():
    with pytest.raises(LaserConfigError, match=r"'everywhere'.*\['resident', 'offload', 'auto'\]"):
        RewardModelPool({"a": VerifierRM()}, placement="everywhere")


@pytest.mark.parametrize(("name", "placement"), [("tiny", "resident"), ("reasoning_7b", "auto")])
def test_pool_yamls_carry_placement_and_timeout_knobs(name, placement):
    cfg = OmegaConf.load(Path(CONF_DIR, "rm_pool") / f"{name}.yaml")
    assert cfg.placement == placement and cfg.timeout_s is None
    pool = instantiate(cfg)
    assert pool.placement == placement and pool.timeout_s is None
    offloaded = instantiate(OmegaConf.merge(cfg, {"placement": "offload", "timeout_s": 30}))
    assert offloaded.placement == "offload" and offloaded.timeout_s == 30.0


# ---- faults: an RM that raises, hangs or miscounts -------------------------------------------------------


def batch(n: int = 3) -> ScoringBatch:
    examples = [Example(str(i), f"q{i}", "") for i in range(n)]
    return ScoringBatch([e.question for e in examples], [f"r{i}" for i in range(n)], examples)


def test_an_rm_that_raises_becomes_a_one_line_error_naming_it_and_is_counted():
    flaky = ScriptedRM("ok", "raise", "ok")
    pool = RewardModelPool({"good": ScriptedRM(), "flaky": flaky})
    assert pool.score([1], batch())[1].tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(RewardModelError) as error:
        pool.score([1], batch())
    assert (error.value.name, error.value.kind, error.value.arm) == ("flaky", "error", 1)
    assert str(error.value) == ("RM 'flaky' failed (error): RuntimeError: CUDA out of memory. | "
                                "Tried to allocate 2 GiB")
    assert isinstance(error.value.__cause__, RuntimeError)  # the original, for a traceback
    assert pool.score([1], batch())[1].tolist() == [0.0, 1.0, 2.0]  # the next call is a fresh try
    counters = pool.counters()["flaky"]
    assert counters["faults"] == 1 and counters["calls"] == 6 and counters["batches"] == 2
    assert counters["tokens"] == 90  # the failed call's work is still compute spent
    assert pool.fault_counts() == {"good": 0, "flaky": 1}


def test_a_wrong_count_is_a_reward_output_error_of_kind_wrong_count():
    pool = RewardModelPool({"short": ScriptedRM("short")})
    wording = r"^RM 'short' returned shape \(2,\), expected \(3,\)"  # as before faults had kinds
    with pytest.raises(RewardOutputError, match=wording) as error:
        pool.score([0], batch())
    assert isinstance(error.value, RewardModelError) and isinstance(error.value, ValueError)
    assert error.value.kind == "wrong_count" and error.value.name == "short"
    assert pool.fault_counts() == {"short": 1} and pool.call_counts() == {"short": 0}


def test_non_finite_scores_are_returned_as_they_are():
    pool = RewardModelPool({"nan": ScriptedRM("nan")})
    scores = pool.score([0], batch())[0]
    assert scores[0].isnan() and scores[1:].tolist() == [1.0, 2.0]
    assert pool.fault_counts() == {"nan": 0}


def test_a_config_mistake_is_not_a_fault_and_passes_through():
    pool = RewardModelPool({"lazy": ScriptedRM("config")})
    with pytest.raises(LaserConfigError, match="/nowhere"):
        pool.score([0], batch())
    assert pool.fault_counts() == {"lazy": 0}


def test_an_rm_raising_its_own_reward_model_error_keeps_its_kind_under_the_pool_name():
    rm = ScriptedRM()
    rm.score = lambda b: (_ for _ in ()).throw(RewardModelError("inner", "timeout", "slow"))  # type: ignore
    pool = RewardModelPool({"first": ScriptedRM(), "outer": rm})
    with pytest.raises(RewardModelError, match="^RM 'outer' failed \\(timeout\\): RM 'inner'.*slow") as error:
        pool.score([0, 1], batch())
    assert (error.value.name, error.value.kind, error.value.arm) == ("outer", "timeout", 1)
    assert pool.fault_counts() == {"first": 0, "outer": 1}


def test_a_hanging_rm_times_out_fails_fast_while_stuck_and_recovers():
    slow = ScriptedRM("hang")
    pool = RewardModelPool({"fast": ScriptedRM(), "slow": slow}, device="meta", placement="offload",
                           timeout_s=0.2)
    try:
        start = time.perf_counter()
        expected = r"^RM 'slow' failed \(timeout\): no answer within 0.2 s"
        with pytest.raises(RewardModelError, match=expected) as error:
            pool.score([1], batch())
        assert error.value.kind == "timeout" and time.perf_counter() - start < 2.0
        assert pool.score([0], batch())[0].tolist() == [0.0, 1.0, 2.0]  # other RMs are unaffected
        with pytest.raises(RewardModelError, match="still running"):  # no second call into a stuck RM
            pool.score([1], batch())
        assert slow.calls == 1 and slow.moves == ["meta"]  # kept on the device while its thread runs
        slow.release.set()
        for _ in range(500):  # bounded wait (5 s) for the background thread to return
            pool._release_finished()  # what the next score call does first
            if not pool._running:
                break
            time.sleep(0.01)
        assert slow.moves == ["meta", "cpu"]  # offloaded once it returned
        assert pool.score([1], batch())[1].tolist() == [0.0, 1.0, 2.0]
        assert pool.fault_counts() == {"fast": 0, "slow": 2} and pool.call_counts() == {"fast": 3, "slow": 3}
    finally:
        slow.release.set()


def test_a_timeout_limit_does_not_change_the_scores_of_a_healthy_rm():
    plain = RewardModelPool({"a": ScriptedRM("nan")}).score([0], batch(5))[0]
    timed = RewardModelPool({"a": ScriptedRM("nan")}, timeout_s=5).score([0], batch(5))[0]
    torch.testing.assert_close(plain, timed, equal_nan=True)


@pytest.mark.parametrize("bad", [0, -1, "soon"])
def test_a_bad_timeout_is_a_config_error(bad):
    with pytest.raises(LaserConfigError, match="timeout_s"):
        RewardModelPool({"a": ScriptedRM()}, timeout_s=bad)
