"""kill -9 at several points of a LASeR step, then `resume=`: the run ends exactly like one never killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

ARGS = ["+experiment=legacy_miniature", "laser.iterations=3", "data.steps_per_iteration=4", "data.eval_limit=30", "trainer.enable_progress_bar=false"]


def _laser(out: Path, cache: Path, *extra: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "LASER_CACHE_DIR": str(cache)}
    env.pop("LASER_KILL_AT", None)
    if kill_at:
        env["LASER_KILL_AT"] = kill_at
    command = [sys.executable, "-m", "laser.run", *ARGS, f"hydra.run.dir={out}", *extra]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _outcome(out: Path) -> tuple:
    results = json.loads((out / "results.json").read_text())
    lines = [json.loads(line) for line in (out / "selections.jsonl").read_text().splitlines()]
    return ([r["test/accuracy"] for r in results["iterations"]], [r["train/loss"] for r in results["iterations"][1:]],
            [(s["step"], s["arm"], s["reward_raw"]) for s in lines], results["rm_calls"])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    done = _laser(root / "full", root / "cache")
    assert done.returncode == 0, done.stderr[-1500:]
    return root, _outcome(root / "full")


# Step 5 is in iteration 2; "checkpoint:1" dies while writing the checkpoint of iteration 2.
@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["generate:5", "score:5", "train:6", "bandit:6", "checkpoint:1"])
def test_killed_run_resumes_to_the_same_results(kill_at, uninterrupted):
    root, expected = uninterrupted
    out = root / kill_at.replace(":", "-")
    killed = _laser(out, root / "cache", kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-1500:]
    assert not (out / "results.json").exists()
    resumed = _laser(out, root / "cache", f"resume={out}")
    assert resumed.returncode == 0, resumed.stderr[-1500:]
    assert _outcome(out) == expected
    assert not list(out.rglob(".*.tmp-*"))  # no half-written checkpoint or JSON left behind


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_restarts_in_place(uninterrupted):
    root, expected = uninterrupted
    out = root / "early"
    killed = _laser(out, root / "cache", kill_at="generate:1")
    assert killed.returncode == -signal.SIGKILL and not (out / "checkpoints" / "last.ckpt").exists()
    assert _laser(out, root / "cache", f"resume={out}").returncode == 0
    assert _outcome(out) == expected
