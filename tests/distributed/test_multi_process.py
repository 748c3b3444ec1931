"""Several processes on the CPU (gloo): trainer=fsdp (FSDP2, laser/distributed/sharding.py) against
trainer=ddp, and resuming either from a checkpoint. Each run is 2 processes x 2 iterations x 3 steps;
each rank evaluates half of the 20 test examples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

SMALL = ["+experiment=legacy_miniature", "trainer.accelerator=cpu", "trainer.devices=2", "laser.iterations=2", "data.steps_per_iteration=3",
         "data.eval_limit=20", "trainer.enable_progress_bar=false"]


def launch(args: list[str], cache: Path) -> None:
    env = {**os.environ, "LASER_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-m", "laser.run", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def outcome(folder: Path) -> dict:
    """What must not depend on how the run was distributed or interrupted: every decision (arm) and its
    raw reward (minus the loss), the evaluation after each iteration, and the RM calls."""
    selections = [json.loads(line) for line in (folder / "selections.jsonl").read_text().splitlines()]
    results = json.loads((folder / "results.json").read_text())
    assert results["complete"]
    evaluations = [{k: v for k, v in r.items() if k.startswith("test/")}
                   for r in json.loads((folder / "iterations.json").read_text())]
    return {"arms": [s["arm"] for s in selections], "rewards": [s["reward_raw"] for s in selections],
            "evaluations": evaluations, "rm_calls": results["rm_calls"]}


# FSDP's reduce-scatter and DDP's all-reduce sum the gradients in different orders (which order depends
# on the CPU and the thread count), so float32 results agree to rounding, not to the bit: measured
# differences in the 7th significant digit (-1.2450072765 vs -1.2450071573). 1e-5 relative leaves two
# orders of magnitude for that drift to compound over 6 steps and a reference refresh, and is still far
# below any real difference (a wrong gradient or a skipped step moves the loss in the 2nd-3rd digit).
# A greedy answer can flip on such a rounding difference only at an exact tie between two tokens, so an
# evaluation may differ by at most one of the 10 examples a rank answers.
REWARD_RTOL = 1e-5


def one_answer_apart(got: dict[str, float], expected: dict[str, float]) -> None:
    """Each accuracy differs by at most one answer of the 20 evaluated (of its category's share, for
    `test/accuracy/<category>`)."""
    from laser.tasks.arithmetic import Arithmetic

    evaluated = Arithmetic().test_examples()[:20]  # the legacy miniature's task; data.eval_limit=20: the first 20
    size = {f"test/accuracy/{c}": sum(e.category == c for e in evaluated) for c in Arithmetic.categories}
    assert set(got) == set(expected)
    for key, value in got.items():
        assert value == pytest.approx(expected[key], abs=1 / size.get(key, len(evaluated)) + 1e-9), key


def assert_same_up_to_rounding(got: dict, expected: dict) -> None:
    assert got["arms"] == expected["arms"]  # decisions: exactly
    assert got["rm_calls"] == expected["rm_calls"]
    assert got["rewards"] == pytest.approx(expected["rewards"], rel=REWARD_RTOL)
    for mine, theirs in zip(got["evaluations"], expected["evaluations"], strict=True):
        one_answer_apart(mine, theirs)


def run_in(tmp_path_factory, name: str, trainer: str, stop_after: int | None = None, extra: list[str] = ()) -> Path:
    folder = tmp_path_factory.mktemp(name) / "run"
    cache = tmp_path_factory.getbasetemp() / "cache"
    launch([f"trainer={trainer}", *SMALL, *extra, f"hydra.run.dir={folder}"]
           + ([f"stop_after_iteration={stop_after}"] if stop_after else []), cache)
    if stop_after:
        assert not json.loads((folder / "results.json").read_text())["complete"]
        launch([f"resume={folder}"], cache)
    return folder


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    return run_in(tmp_path_factory, "ddp", "ddp")


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory) -> Path:
    return run_in(tmp_path_factory, "fsdp", "fsdp")


@pytest.mark.slow
def test_ddp_ranks_share_each_bandit_decision_and_rank_0_writes_one_results_file(ddp_run):
    """Two gloo processes: each takes its share of the batches, both apply rank 0's decision."""
    assert list(ddp_run.parent.rglob("results.json")) == [ddp_run / "results.json"]
    results = json.loads((ddp_run / "results.json").read_text())
    assert results["complete"] and "ddp_decision_mismatch" not in results["skipped_steps"]
    lines = (ddp_run / "selections.jsonl").read_text().splitlines()
    assert len(lines) == 6 == sum(results["rm_selection_counts"].values())  # one shared decision per step
    # Both ranks scored their own prompts with the shared choice: 2 ranks x 8 prompts x 4 samples per step.
    assert sum(results["rm_calls"].values()) == 6 * 2 * 8 * 4


@pytest.mark.slow
def test_fsdp_shards_the_policy_and_matches_ddp(ddp_run, fsdp_run):
    """FSDP2 over 2 ranks: the decoder layers are sharded, and every decision equals the DDP run's, every
    loss and evaluation up to summation-order rounding (the same maths on the same data; the reference
    refresh after iteration 1 merges sharded weights)."""
    assert "trainer=fsdp: 2 decoder layers sharded over 2 ranks" in (fsdp_run / "run.log").read_text()
    fsdp = outcome(fsdp_run)
    assert len(fsdp["arms"]) == 6
    assert_same_up_to_rounding(fsdp, outcome(ddp_run))


@pytest.mark.slow
def test_fsdp_with_activation_checkpointing_matches_ddp(tmp_path_factory, ddp_run):
    checkpointed = run_in(tmp_path_factory, "fsdp-ckpt", "fsdp", extra=["policy.activation_checkpointing=true"])
    assert_same_up_to_rounding(outcome(checkpointed), outcome(ddp_run))


@pytest.mark.slow
def test_sharded_evaluation_scores_the_whole_test_set(tmp_path_factory, ddp_run):
    """Each of the 2 ranks answers half of the test set; the gathered answers score as one process
    answering all of them (iteration 0: the same policy in both). The batches differ (so do their
    padding and matmul shapes), so an answer may flip at a near-tie of two tokens: one example at most."""
    folder = tmp_path_factory.mktemp("single") / "run"
    launch(["+experiment=legacy_miniature", "trainer.accelerator=cpu", "laser.iterations=1", "data.steps_per_iteration=1", "data.eval_limit=20",
            "trainer.enable_progress_bar=false", f"hydra.run.dir={folder}"], tmp_path_factory.getbasetemp() / "cache")
    single, sharded = (json.loads((f / "iterations.json").read_text())[0] for f in (folder, ddp_run))
    before = {k: v for k, v in single.items() if k.startswith("test/")}
    assert len(before) >= 3
    one_answer_apart(before, {k: v for k, v in sharded.items() if k.startswith("test/")})


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["ddp", "fsdp"])
def test_a_resumed_multi_process_run_ends_as_an_uninterrupted_one(tmp_path_factory, request, trainer):
    """Stopped after iteration 1 and resumed: each rank continues its own random and noise streams
    (checkpointed per rank), so the decisions, losses and evaluations equal the uninterrupted run's of
    the same strategy and process count, to the bit (the same operations in the same order)."""
    resumed = run_in(tmp_path_factory, f"{trainer}-resumed", trainer, stop_after=1)
    assert outcome(resumed) == outcome(request.getfixturevalue(f"{trainer}_run"))


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["ddp", "fsdp"])
def test_micro_batches_under_several_processes_match_one_micro_batch(tmp_path_factory, ddp_run, trainer):
    """laser.micro_batch_size: one backward per micro-batch (each one synchronised: Lightning's manual_backward
    prepares DDP's reducer every time; FSDP2 reduce-scatters each), then one optimiser step, as one backward."""
    micro = run_in(tmp_path_factory, f"{trainer}-micro", trainer, extra=["laser.micro_batch_size=2"])
    assert_same_up_to_rounding(outcome(micro), outcome(ddp_run))


@pytest.mark.slow
def test_a_guarded_run_undoes_alike_on_every_rank_under_ddp_and_fsdp(tmp_path_factory):
    """guard=dev_rollback under 2 processes: every rank measures the dev set, takes rank 0's verdict, restores
    its (sharded) adapter and skips resting batches together; no collective is left unpaired (a hang would
    time out), and the FSDP run's decisions and undos equal the DDP run's."""
    guard = ["guard=dev_rollback", "guard.dev_per_category=8", "guard.check_every=2", "guard.max_drop=-1.0"]
    runs = {trainer: run_in(tmp_path_factory, f"guard-{trainer}", trainer, extra=guard) for trainer in ("ddp", "fsdp")}
    tallies = {trainer: [(r["guard/checks"], r["guard/rolled_back"]) for r in
                         json.loads((folder / "iterations.json").read_text())[1:]] for trainer, folder in runs.items()}
    assert tallies["ddp"] == tallies["fsdp"] == [(2.0, 2.0)] * 2  # a check after step 2 and at the end: both undone
    assert outcome(runs["fsdp"])["arms"] == outcome(runs["ddp"])["arms"]
