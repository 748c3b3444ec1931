"""RM faults in the pool: an RM that raises, hangs or miscounts becomes a named `RewardModelError`."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from laser.errors import LaserConfigError
from laser.rewards.base import RewardModel, ScoringBatch
from laser.rewards.errors import RewardModelError, RewardOutputError
from laser.rewards.pool import RewardModelPool
from laser.tasks.base import Example


def batch(n: int = 3) -> ScoringBatch:
    examples = [Example(str(i), f"q{i}", "") for i in range(n)]
    return ScoringBatch([e.question for e in examples], [f"r{i}" for i in range(n)], examples)


class ScriptedRM(RewardModel):
    """Does, on its i-th call, what `script[i]` says (then "ok" forever): "ok", "raise", "short",
    "nan", "hang" (wait on `release`, at most 10 s), "config"."""

    def __init__(self, *script: str) -> None:
        super().__init__()
        self.script, self.calls, self.moves = list(script), 0, []
        self.release = threading.Event()

    def to(self, device):
        self.moves.append(str(device))
        return self

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        action = self.script[self.calls] if self.calls < len(self.script) else "ok"
        self.calls += 1
        self.tokens_processed += 10 * len(batch)
        if action == "raise":
            raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")
        if action == "config":
            raise LaserConfigError("model path '/nowhere' does not exist")
        if action == "hang":
            self.release.wait(10)  # bounded: a test failure never leaves a thread for long
        scores = torch.arange(len(batch), dtype=torch.float32)
        if action == "short":
            return scores[:-1]
        if action == "nan":
            scores[0] = float("nan")
        return scores


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
