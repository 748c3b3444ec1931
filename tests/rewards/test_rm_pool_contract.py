"""The contract every RM pool meets, checked for every conf/rm_pool/*.yaml: a new pool (one yaml, maybe one
RM file) is picked up here with no list to edit.

Every yaml opens with what it is and composes into a `RewardModelPool` of named RMs: either the pool
itself with its `models` listed, or a factory that returns one (`category_judges` builds its arms from
`${task.categories}`). Then, by what its RMs need:
- local (nothing to download: programmatic RMs, models built locally): the pool builds, every RM
  scores a small batch with one finite score per response, and a short run completes;
- hub (it names hub models): offline with an empty Hugging Face cache, the preflight refuses the run
  before any work, in one line naming every hub model of the pool;
- served (RemoteRMs: the models live on an RM server): nothing loads here, the preflight has no model
  to check, and with no server every RM call is a fault named by its URL, so a short run skips its
  steps, counts the faults and completes.
"""

from __future__ import annotations

import socket
import typing
from pathlib import Path

import pytest
import torch
from conftest import CONF_DIR, briefly, compose_config
from hydra.utils import get_object
from omegaconf import DictConfig, open_dict

from laser.config.instantiate import instantiate
from laser.config.preflight import looks_local, model_references
from laser.errors import LaserConfigError
from laser.rewards.base import ScoringBatch
from laser.rewards.errors import RewardModelError
from laser.rewards.pool import RewardModelPool
from laser.run import run
from laser.tasks.arithmetic import Arithmetic

POOLS = sorted(Path(CONF_DIR, "rm_pool").glob("*.yaml"))
SHORT_RUN = ["laser.iterations=1", "data.steps_per_iteration=2", "data.eval_limit=8"]
def hub_models(cfg: DictConfig) -> list[str]:
    """The hub ids the pool names (local folders and built models are not on the hub)."""
    return sorted({value for _, value, _ in model_references(cfg.rm_pool) if not looks_local(value)})


def listed_models(cfg: DictConfig) -> dict:
    """The RMs the yaml lists by name (a factory pool builds its own arms and may list none)."""
    return {name: rm for name, rm in (cfg.rm_pool.get("models") or {}).items() if rm is not None}


def builds_a_pool(target: str) -> bool:
    """`_target_` is RewardModelPool, or a function annotated to return one."""
    obj = get_object(target)
    return obj is RewardModelPool or typing.get_type_hints(obj).get("return") is RewardModelPool


def served(cfg: DictConfig) -> bool:
    return any(str(rm.get("_target_", "")).endswith("RemoteRM") for rm in listed_models(cfg).values())


def kind(path: Path) -> str:
    cfg = compose_config([f"rm_pool={path.stem}"])
    return "hub" if hub_models(cfg) else "served" if served(cfg) else "local"


KINDS = {path.stem: kind(path) for path in POOLS}


def pools(which: str) -> list:
    return [pytest.param(path, id=path.stem) for path in POOLS if KINDS[path.stem] == which]


def free_port() -> int:
    """A localhost port nothing listens on (no RM server there)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scoring_batch(n: int = 4) -> ScoringBatch:
    """Arithmetic questions with right and wrong answers (a verifier needs the task's gold answers)."""
    task = Arithmetic(num_train=4, num_test=n, seed=0)
    examples = task.test_examples()[:n]
    responses = [f" {e.answer}" if i % 2 else " 0" for i, e in enumerate(examples)]
    return ScoringBatch([task.format_prompt(e) for e in examples], responses, examples, task)


@pytest.mark.parametrize("path", POOLS, ids=lambda p: p.stem)
def test_the_yaml_composes_into_a_pool_of_named_rms(path: Path) -> None:
    assert path.read_text().startswith("#")  # opens with what it is
    cfg = compose_config([f"rm_pool={path.stem}"])
    assert builds_a_pool(cfg.rm_pool._target_)
    models = listed_models(cfg)
    assert all("_target_" in rm for rm in models.values())
    assert models or cfg.rm_pool._target_ != "laser.rewards.pool.RewardModelPool"  # the pool itself lists its RMs
    assert KINDS[path.stem] in ("local", "hub", "served")


@pytest.mark.parametrize("path", pools("local"))
def test_a_local_pool_builds_and_each_rm_scores_a_batch(path: Path, cache_dir: Path) -> None:
    cfg = briefly(compose_config([f"rm_pool={path.stem}", f"paths.cache_dir={cache_dir}"]))
    pool = instantiate(cfg.rm_pool, _convert_="all")
    assert isinstance(pool, RewardModelPool) and len(set(pool.names)) == len(pool)
    assert list(listed_models(cfg)) == pool.names[len(pool) - len(listed_models(cfg)):]  # listed arms come last
    batch = scoring_batch()
    for arm in range(len(pool)):
        scores = pool.score([arm], batch)[arm]
        assert scores.shape == (len(batch),) and scores.dtype == torch.float32 and torch.isfinite(scores).all()
    assert pool.call_counts() == dict.fromkeys(pool.names, len(batch))


@pytest.mark.parametrize("path", pools("local"))
def test_a_short_run_with_a_local_pool_completes(path: Path, make_config, tmp_path: Path) -> None:
    out = tmp_path / "run"
    results = run(briefly(make_config([f"rm_pool={path.stem}", *SHORT_RUN], output_dir=out)), out)
    assert results["complete"] and len(results["iterations"]) == 2 and sum(results["rm_calls"].values()) > 0


@pytest.mark.parametrize("path", pools("hub"))
def test_a_hub_pool_is_refused_offline_before_any_work_in_one_line_naming_its_models(
        path: Path, make_config, tmp_path: Path, offline_hub: Path) -> None:
    cfg = make_config([f"rm_pool={path.stem}"], output_dir=tmp_path / "run")
    with pytest.raises(LaserConfigError) as caught:
        run(cfg, tmp_path / "run")
    message = str(caught.value)
    assert "\n" not in message and "cannot be loaded" in message
    assert all(model in message for model in hub_models(cfg))
    assert not (tmp_path / "run" / "config.yaml").exists()  # refused before the folder was claimed


@pytest.mark.parametrize("path", pools("served"))
def test_a_served_pool_without_its_server_is_a_named_fault_and_the_run_completes(
        path: Path, make_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("LASER_RM_URL", url)  # how the example yaml is pointed at its server
    cfg = make_config([f"rm_pool={path.stem}", *SHORT_RUN], output_dir=tmp_path / "run")
    assert list(model_references(cfg.rm_pool)) == []  # nothing for the preflight to check
    with open_dict(cfg):
        for rm in cfg.rm_pool.models.values():
            rm.url, rm.retries, rm.backoff_s = url, 0, 0.0  # fail fast: connection refused, no retry
    pool = instantiate(cfg.rm_pool, _convert_="all")  # builds offline: nothing loads
    with pytest.raises(RewardModelError) as caught:
        pool.score([0], scoring_batch())
    assert url in str(caught.value) and "\n" not in str(caught.value)
    results = run(cfg, tmp_path / "run")
    assert results["complete"] and results["faults"].get("faults/error", 0) == 2  # both steps' RM failed
    assert results["skipped_steps"] == {"rm_error": 2}
