"""The step survives an RM that raises, hangs, miscounts or returns NaN/inf: the step is skipped (or the arm
penalised), the fault is counted in results.json under faults/*, and the run completes."""

from __future__ import annotations

import json
import time

import pytest
import torch

from laser.rewards.verifier import VerifierRM
from laser.run import run
from laser.selection.single import SingleRM

ORACLE = ["rm_pool=oracle", "bandit=single", "bandit.arm=oracle", "laser.iterations=1", "data.steps_per_iteration=4"]


def _every_other_call(monkeypatch, misbehave):
    real = VerifierRM.score
    calls = {"n": 0}

    def score(self, batch):
        calls["n"] += 1
        return misbehave(batch) if calls["n"] % 2 == 0 else real(self, batch)

    monkeypatch.setattr(VerifierRM, "score", score)


def _read(out):
    results = json.loads((out / "results.json").read_text())
    lines = [json.loads(line) for line in (out / "selections.jsonl").read_text().splitlines()]
    return results, lines


def _raise(batch):
    raise RuntimeError("CUDA out of memory (simulated)")


@pytest.mark.parametrize(("misbehave", "kind", "extra"), [
    (_raise, "error", []),
    (lambda batch: torch.zeros(len(batch) + 1), "wrong_count", []),
    (lambda batch: time.sleep(3) or torch.zeros(len(batch)), "timeout", ["rm_pool.timeout_s=1.0"]),
])
def test_a_faulty_rm_skips_its_steps_and_the_run_completes(misbehave, kind, extra, make_config, tmp_path,
                                                            monkeypatch):
    _every_other_call(monkeypatch, misbehave)
    out = tmp_path / "run"
    run(make_config(ORACLE + extra, output_dir=out), out)
    results, lines = _read(out)
    assert results["complete"]
    faults = results["faults"]
    assert faults[f"faults/{kind}"] >= 1 and faults["faults/rm/oracle"] == faults[f"faults/{kind}"]
    assert [line.get("skipped") for line in lines].count(f"rm_{kind}") == faults[f"faults/{kind}"]


def test_penalise_gives_the_faulty_arm_reward_zero(make_config, tmp_path, monkeypatch):
    _every_other_call(monkeypatch, _raise)
    rewards = []
    real_update = SingleRM.update
    monkeypatch.setattr(SingleRM, "update", lambda self, sel, ctx, reward, feedback=None: (
        rewards.append(reward), real_update(self, sel, ctx, reward, feedback)))
    out = tmp_path / "run"
    results = run(make_config(ORACLE + ["laser.on_rm_fault=penalise"], output_dir=out), out)
    assert results["faults"]["faults/error"] == rewards.count(0.0) >= 1


def test_skip_never_rewards_the_faulty_arm(make_config, tmp_path, monkeypatch):
    _every_other_call(monkeypatch, _raise)
    rewards = []
    monkeypatch.setattr(SingleRM, "update", lambda self, sel, ctx, reward, feedback=None: rewards.append(reward))
    out = tmp_path / "run"
    results = run(make_config(ORACLE, output_dir=out), out)
    assert len(rewards) == 4 - results["faults"]["faults/error"] - results["skipped_steps"].get("no_pairs", 0)


@pytest.mark.parametrize("bad_value", [float("nan"), float("-inf")], ids=["nan", "inf"])
def test_nonfinite_rm_scores_skip_the_step_and_the_run_completes(make_config, tmp_path, monkeypatch, bad_value):
    real_score = VerifierRM.score
    calls: list[bool] = []  # per score call: did it return the bad value?
    updates: list[float] = []

    def every_other_call_bad(self, batch):
        calls.append(len(calls) % 2 == 1)
        return torch.full((len(batch),), bad_value) if calls[-1] else real_score(self, batch)

    monkeypatch.setattr(VerifierRM, "score", every_other_call_bad)
    monkeypatch.setattr(SingleRM, "update", lambda self, selection, context, reward, feedback=None: updates.append(reward),
                        raising=False)
    out = tmp_path / "run"
    results = run(make_config(["rm_pool=oracle", "bandit=single", "bandit.arm=oracle", "laser.iterations=1"]), out)

    selections = [json.loads(line) for line in (out / "selections.jsonl").read_text().splitlines()]
    assert results["complete"] is True
    assert json.loads((out / "results.json").read_text())["complete"] is True
    assert len(calls) == len(selections) == 6  # one score call per step; evaluation needs no RM
    assert results["skipped_steps"]["nonfinite_scores"] == sum(calls) == 3
    for was_bad, line in zip(calls, selections, strict=True):
        if was_bad:
            assert line["skipped"] == "nonfinite_scores"
            assert line["reward_raw"] is None and line["reward_normalised"] is None
        else:
            assert line.get("skipped") in (None, "no_pairs")  # all-tied scores make no pairs
    rewarded = [line for line in selections if "skipped" not in line]
    assert rewarded and all(isinstance(line["reward_raw"], float) for line in rewarded)
    # The selector learns from the rewarded steps only, never from a skipped one.
    assert updates == [line["reward_normalised"] for line in rewarded]
