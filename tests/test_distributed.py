"""Several processes on the CPU (gloo): trainer=fsdp (FSDP2, laser/sharding.py) against trainer=ddp,
and resuming either from a checkpoint. Each run is 2 processes x 2 iterations x 3 steps; each rank
evaluates half of the 20 test examples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from laser.ranks import interleave

REPO = Path(__file__).resolve().parents[1]
SMALL = ["trainer.accelerator=cpu", "trainer.devices=2", "laser.iterations=2", "data.steps_per_iteration=3",
         "data.eval_limit=20", "trainer.enable_progress_bar=false"]


def launch(args: list[str], cache: Path) -> None:
    env = {**os.environ, "LASER_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-m", "laser.run", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def outcome(folder: Path) -> tuple[list, list, dict]:
    """What must not depend on how the run was distributed or interrupted: every decision (arm and raw
    reward, i.e. the loss), the evaluation after each iteration, and the RM calls."""
    selections = [json.loads(line) for line in (folder / "selections.jsonl").read_text().splitlines()]
    results = json.loads((folder / "results.json").read_text())
    assert results["complete"]
    evaluations = [{k: v for k, v in r.items() if k.startswith("test/")}
                   for r in json.loads((folder / "iterations.json").read_text())]
    return [(s["arm"], s["reward_raw"]) for s in selections], evaluations, results["rm_calls"]


def run_in(tmp_path_factory, name: str, trainer: str, stop_after: int | None = None, extra: list[str] = ()) -> Path:
    folder = tmp_path_factory.mktemp(name) / "run"
    cache = tmp_path_factory.getbasetemp() / "cache"
    launch([f"trainer={trainer}", *SMALL, *extra, f"hydra.run.dir={folder}"]
           + ([f"stop_after_iteration={stop_after}"] if stop_after else []), cache)
    if stop_after:
        assert not json.loads((folder / "results.json").read_text())["complete"]
        launch([f"resume={folder}"], cache)
    return folder


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_interleave_undoes_the_evaluation_split(world):
    for count in range(10):
        items = list(range(count))
        assert interleave([items[rank::world] for rank in range(world)]) == items


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    return run_in(tmp_path_factory, "ddp", "ddp")


@pytest.mark.parametrize("checkpointing", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_fsdp_shards_the_policy_and_matches_ddp_exactly(tmp_path_factory, ddp_run, checkpointing):
    """FSDP2 over 2 ranks: the decoder layers are sharded, and every decision, loss and evaluation
    equals the DDP run's (the same maths on the same data; the reference refresh after iteration 1
    merges sharded weights), with or without activation checkpointing."""
    fsdp_run = run_in(tmp_path_factory, "fsdp", "fsdp", extra=[f"policy.activation_checkpointing={checkpointing}"])
    assert "trainer=fsdp: 2 decoder layers sharded over 2 ranks" in (fsdp_run / "run.log").read_text()
    decisions, evaluations, rm_calls = outcome(fsdp_run)
    assert len(decisions) == 6
    assert (decisions, evaluations, rm_calls) == outcome(ddp_run)


def test_sharded_evaluation_scores_the_whole_test_set(tmp_path_factory, ddp_run):
    """Each of the 2 ranks answers half of the test set; the gathered answers score exactly as one
    process answering all of them (iteration 0: the same untrained-by-LASeR policy in both)."""
    folder = tmp_path_factory.mktemp("single") / "run"
    launch(["trainer.accelerator=cpu", "laser.iterations=1", "data.steps_per_iteration=1", "data.eval_limit=20",
            "trainer.enable_progress_bar=false", f"hydra.run.dir={folder}"], tmp_path_factory.getbasetemp() / "cache")
    single, sharded = (json.loads((f / "iterations.json").read_text())[0] for f in (folder, ddp_run))
    before = {k: v for k, v in single.items() if k.startswith("test/")}
    assert len(before) >= 3 and before == {k: v for k, v in sharded.items() if k.startswith("test/")}


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["ddp", "fsdp"])
def test_a_resumed_multi_process_run_ends_as_an_uninterrupted_one(tmp_path_factory, ddp_run, trainer):
    """Stopped after iteration 1 and resumed: each rank continues its own random and noise streams
    (checkpointed per rank), so the decisions, losses and evaluations equal the uninterrupted run's."""
    resumed = run_in(tmp_path_factory, f"{trainer}-resumed", trainer, stop_after=1)
    assert outcome(resumed) == outcome(ddp_run)


def test_counts_in_results_are_summed_over_ranks(make_config, tmp_path):
    """RM calls, RM tokens and generated tokens are each rank's own; the module sums them over ranks
    (one reduce) before they reach iterations.json, results.json and the logger. Checked with a
    stand-in strategy whose reduce adds a second, identical rank."""
    import types

    import torch

    from laser.run import build

    module = build(make_config(), tmp_path)["module"]
    module.tracker.on_step(7)
    module.rm_pool._counters[module.rm_pool.names[0]].update(calls=5, tokens=11)
    two_ranks = types.SimpleNamespace(reduce=lambda tensor, reduce_op: tensor * 2, root_device=torch.device("cpu"))
    module._trainer = types.SimpleNamespace(world_size=2, strategy=two_ranks)
    assert module.refresh_global_counts() == 14
    first = module.rm_pool.names[0]
    assert module.last_generated_tokens == 14
    assert module.last_rm_calls[first] == 10 and module.last_rm_tokens[first] == 22
