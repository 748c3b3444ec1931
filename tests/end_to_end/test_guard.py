"""`guard=dev_rollback` in whole (shrunk) runs: an undone iteration leaves nothing in the policy, tells
the selector, and a stopped guarded run resumes exactly as it would have gone on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from laser.run import run

GUARD = ["bandit=linucb", "guard=dev_rollback", "guard.dev_per_category=8", "laser.iterations=2",
         "data.steps_per_iteration=4", "data.eval_limit=16"]


def _iterations(folder: Path) -> list[dict]:
    return json.loads((folder / "iterations.json").read_text())


def _selections(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "selections.jsonl").read_text().splitlines()]


def _merged_lora_b(folder: Path) -> list[float]:
    """How much of each iteration's adapter went into the reference (the size of its lora_B weights)."""
    state = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=False)["laser"]
    return [sum(float(v.abs().sum()) for k, v in merged.items() if "lora_B" in k) for merged in state["merged_adapters"]]


@pytest.mark.parametrize("check_every, checks", [("null", 1), (2, 2)])
def test_undone_steps_leave_the_policy_as_it_was_and_penalise_their_decisions(check_every, checks, make_config,
                                                                             tmp_path):
    """max_drop=-1 demands a gain no category can make: every check undoes the steps before it."""
    undone, plain = tmp_path / "undone", tmp_path / "plain"
    knobs = [*GUARD, f"guard.check_every={check_every}"]
    run(make_config([*knobs, "guard.max_drop=-1.0", "guard.cooldown=0"], output_dir=undone), undone)
    run(make_config([*knobs, "guard.max_drop=1.0"], output_dir=plain), plain)  # never undoes anything
    records = _iterations(undone)
    assert [(r["guard/checks"], r["guard/rolled_back"]) for r in records[1:]] == [(checks, checks)] * 2
    for record in records[1:]:  # the undone policy is the starting one: the same greedy answers
        assert {k: v for k, v in record.items() if k.startswith("test/")} == \
            {k: v for k, v in records[0].items() if k.startswith("test/")}
    assert _merged_lora_b(undone) == [0.0, 0.0]  # nothing reached the reference
    assert all(b > 0 for b in _merged_lora_b(plain))  # while a kept iteration's update did
    assert [r["guard/rolled_back"] for r in _iterations(plain)[1:]] == [0.0, 0.0]
    assert _iterations(plain)[1]["guard/checks"] == checks
    rewarded = [sum(1 for s in _selections(undone) if s["iteration"] == i and s.get("reward_normalised") is not None)
                for i in (1, 2)]
    assert [r["guard/penalised"] for r in records[1:]] == rewarded and min(rewarded) > 0


def test_a_fallen_category_rests_its_batches(make_config, tmp_path):
    out = tmp_path / "run"
    run(make_config([*GUARD, "guard.max_drop=-1.0", "guard.cooldown=1", "guard.penalty=null"], output_dir=out), out)
    results = json.loads((out / "results.json").read_text())
    assert results["skipped_steps"].get("guard_resting") == 4  # iteration 2: every category rests, every step skipped
    assert {s["iteration"] for s in _selections(out)} == {1} and _iterations(out)[2]["guard/penalised"] == 0.0


def test_a_stopped_guarded_run_resumes_exactly(make_config, tmp_path):
    overrides = [*GUARD, "laser.iterations=3", "guard.max_drop=-0.1", "guard.cooldown=1"]  # undo, rest, then train
    full, part = tmp_path / "full", tmp_path / "part"
    run(make_config(overrides, output_dir=full), full)
    run(make_config([*overrides, "stop_after_iteration=1"], output_dir=part), part)
    run(make_config([f"resume={part}"], output_dir=part), part)
    assert [r["guard/rolled_back"] for r in _iterations(full)[1:]].count(1.0) >= 1  # the resume crosses an undo
    keys = ("guard/rolled_back", "guard/rollbacks", "dev/accuracy/addition", "dev/accuracy/comparison", "test/accuracy")
    assert [[r.get(k) for k in keys] for r in _iterations(part)] == [[r.get(k) for k in keys] for r in _iterations(full)]
    assert [(s["arm"], s["reward_raw"]) for s in _selections(part)] == [(s["arm"], s["reward_raw"]) for s in _selections(full)]
    skipped = [json.loads((f / "results.json").read_text())["skipped_steps"] for f in (part, full)]
    assert skipped[0] == skipped[1] and skipped[0].get("guard_resting", 0) > 0  # the rest survived the resume
