"""The contract every selector meets, checked for every conf/bandit/*.yaml: a new bandit (one file + one
yaml) is picked up here with no list to edit.

For each yaml: it opens with what it is and how to run it and composes into the real config (the pool
supplies num_arms and arm_names, the shared selector options are composed in, the context is its own
group); the selector it builds selects RMs of the pool and learns from rewards in [0, 1] on random
unit contexts; its state_dict, loaded into a fresh instance with another seed, continues with the
same decisions (random selectors too: their random streams are in the state); and a short run (one
iteration of two steps) completes. The pool is tiny_with_classifier: four local RMs, so every row of
a results table (single_0 .. single_3 too) has its arm.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import CONF_DIR, compose_config
from hydra.utils import get_class
from omegaconf import OmegaConf

from laser.config.instantiate import instantiate
from laser.run import run
from laser.selection.base import Selector, StepFeedback
from laser.selection.ridge import RidgeSelector

BANDITS = sorted(Path(CONF_DIR, "bandit").glob("*.yaml"))
POOL = "rm_pool=tiny_with_classifier"
CONTEXTS = F.normalize(torch.randn(12, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
CANDIDATE_PAIRS = [(0, 0, 1), (0, 1, 2), (1, 2, 0)]  # (prompt, chosen, rejected) among 2 prompts x 3 responses


def selector_of(name: str, seed: int | None = None) -> tuple[Selector, list[str]]:
    """The selector `bandit=<name>` builds for the pool, as `python -m laser.run` builds it (with `seed=`)."""
    cfg = compose_config([f"bandit={name}", POOL])
    if seed is not None:
        cfg.seed = seed  # what `seed=<n>` on the command line sets (bandit.seed is ${seed})
    names = [arm for arm, rm in cfg.rm_pool.models.items() if rm is not None]
    return instantiate(cfg.bandit, num_arms=len(names), arm_names=names, _convert_="all"), names


def drive(selector: Selector, steps: range) -> list:
    """Select, combine the chosen arms' scores, filter pairs, update with a reward in [0, 1], and end an
    iteration every two steps; record everything decided."""
    record = []
    for step in steps:
        context = CONTEXTS[step]
        selection = selector.select(context)
        scores = {arm: torch.randn(2, 3, generator=torch.Generator().manual_seed(10 * step + arm))
                  for arm in selection.arms}
        kept = selector.filter_pairs(list(CANDIDATE_PAIRS), scores)
        reward = (0.2 + 0.3 * selection.arms[0] + 0.1 * (step % 3)) % 1.0
        selector.update(selection, context, reward, StepFeedback(scores=scores, pairs=kept))
        if step % 2:
            selector.on_iteration_end(step // 2 + 1)
        record.append((selection.arms, selection.propensity, selector.combine(scores).tolist(), kept,
                       selector.diagnostics()))
    return record


@pytest.mark.parametrize("path", BANDITS, ids=lambda p: p.stem)
def test_the_yaml_composes_with_the_pool_supplying_the_arms(path: Path) -> None:
    text = path.read_text()
    assert text.startswith("#") and "python -m laser.run" in text  # opens with what it is and how to run it
    raw = OmegaConf.load(path)
    node = raw.get("bandit", raw)  # a global-package yaml (oracle) writes under `bandit:`
    assert "num_arms" not in node and "arm_names" not in node  # the pool supplies these
    cfg = compose_config([f"bandit={path.stem}", POOL])
    assert "num_arms" not in cfg.bandit and "arm_names" not in cfg.bandit
    assert cfg.bandit.granularity == "batch"  # the shared selector options are composed in
    assert "context" not in cfg.bandit and cfg.context._target_.startswith("laser.selection.context.")  # its own group
    selector, names = selector_of(path.stem)
    assert type(selector) is get_class(cfg.bandit._target_)
    assert selector.arm_names == names and selector.num_arms == len(names) and selector.granularity == "batch"


@pytest.mark.parametrize("path", BANDITS, ids=lambda p: p.stem)
def test_the_selector_selects_arms_of_the_pool_and_learns_from_rewards_in_the_unit_interval(path: Path) -> None:
    selector, names = selector_of(path.stem)
    for arms, propensity, combined, kept, diagnostics in drive(selector, range(len(CONTEXTS))):
        assert arms and all(0 <= arm < len(names) for arm in arms)
        assert propensity is None or 0.0 < propensity <= 1.0
        assert len(combined) == 2 and all(len(row) == 3 for row in combined)
        assert set(kept) <= set(CANDIDATE_PAIRS)
        assert all(isinstance(key, str) and isinstance(value, float) for key, value in diagnostics.items())
    if isinstance(selector, RidgeSelector):
        assert {f"count/{name}" for name in names} <= set(selector.diagnostics())


@pytest.mark.parametrize("path", BANDITS, ids=lambda p: p.stem)
def test_a_checkpointed_selector_continues_with_the_same_decisions(path: Path) -> None:
    straight = drive(selector_of(path.stem)[0], range(len(CONTEXTS)))
    first = selector_of(path.stem)[0]
    drive(first, range(6))
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)  # as in a checkpoint: loaded with weights_only
    buffer.seek(0)
    resumed = selector_of(path.stem, seed=99)[0]  # another seed: what continues must come from the state
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert drive(resumed, range(6, len(CONTEXTS))) == straight[6:]


@pytest.mark.parametrize("path", BANDITS, ids=lambda p: p.stem)
def test_a_short_run_completes(path: Path, make_config, tmp_path: Path) -> None:
    out = tmp_path / "run"
    results = run(make_config([f"bandit={path.stem}", POOL, "laser.iterations=1", "data.steps_per_iteration=2",
                               "data.eval_limit=8"], output_dir=out), out)
    assert results["complete"] and len(results["iterations"]) == 2
    assert sum(results["rm_selection_counts"].values()) >= 2 and sum(results["rm_calls"].values()) > 0
