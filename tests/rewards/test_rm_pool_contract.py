"""The contract every RM pool meets, checked for every conf/rm_pool/*.yaml: a new pool (one yaml, maybe one
RM file) is picked up here with no list to edit.

Every yaml opens with what it is and composes into a `RewardModelPool` of named RMs: either the pool
itself with its `models` listed, or a factory that returns one (`category_judges` builds its arms from
`${task.categories}`). Then, by what its RMs need:
- local (nothing to download: programmatic RMs, models built locally): the pool builds, every RM
  scores a small batch with one finite score per response, and a short run completes;
- hub (it names hub models): offline with an empty Hugging Face cache, the preflight refuses the run
  before any work, in one line naming every hub model of the pool;
- served (any arm scores on a server: laser's, vLLM, OpenRLHF, an OpenAI-compatible judge): nothing loads
  here and the model preflight has no model to check; with no server the run is refused before step 1 in
  one line naming every remote arm, and with a server that is up but fails every request, each pick of a
  remote arm is a fault named by its URL, so a short run skips those steps, counts them and completes.
"""

from __future__ import annotations

import json
import socket
import typing
from pathlib import Path

import pytest
import torch
from conftest import BRIEF_WARM_START, CONF_DIR, briefly, compose_config
from fake_servers import BrokenServer
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf, open_dict

from laser.config.instantiate import instantiate
from laser.config.preflight import looks_local, model_references
from laser.config.remote_check import remote_arm_nodes
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


def remote_arms(cfg: DictConfig) -> dict[str, DictConfig]:
    """Config key under rm_pool.models -> node, of the arms that score on a server (`RemoteArm`s)."""
    container = OmegaConf.to_container(cfg.rm_pool, resolve=False)
    return {key.split(".")[-1]: cfg.rm_pool.models[key.split(".")[-1]] for key, _ in remote_arm_nodes(container)}


def served(cfg: DictConfig) -> bool:
    return bool(remote_arms(cfg))


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
def test_a_served_pool_without_its_server_is_refused_and_a_failing_server_is_a_named_fault(
        path: Path, make_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for variable in ("LASER_RM_URL", "LASER_VLLM_URL", "LASER_OPENRLHF_URL", "LASER_JUDGE_URL"):
        monkeypatch.setenv(variable, url)  # how the example yamls are pointed at their servers
    # The fair miniature's task; a brief warm start (what the policy learns is not this test's business).
    cfg = make_config([f"rm_pool={path.stem}", *SHORT_RUN, *BRIEF_WARM_START], output_dir=tmp_path / "down",
                      legacy=False)
    assert list(model_references(cfg.rm_pool)) == []  # nothing for the model preflight to check
    remote = remote_arms(cfg)
    with pytest.raises(LaserConfigError) as caught:
        run(cfg, tmp_path / "down")
    message = str(caught.value)
    assert "\n" not in message and f"{len(remote)} remote RM(s) cannot serve" in message
    assert all(f"rm_pool.models.{name}: {url} is unreachable" in message for name in remote)
    server = BrokenServer([str(node.get("model", node.get("rm", ""))) for node in remote.values()])
    try:
        first = next(iter(remote))  # always picked, so every step meets the broken server
        cfg = make_config([f"rm_pool={path.stem}", *SHORT_RUN, *BRIEF_WARM_START, "bandit=single",
                           f"bandit.arm={first}"], output_dir=tmp_path / "run", legacy=False)
        with open_dict(cfg):
            for name in remote:
                node = cfg.rm_pool.models[name]
                node.url, node.retries, node.backoff_s = server.url, 0, 0.0  # fail fast: no retry
        pool = instantiate(cfg.rm_pool, _convert_="all")  # builds offline: nothing loads
        arm = pool.index(first)
        with pytest.raises(RewardModelError) as caught:
            pool.score([arm], scoring_batch())
        assert server.url in str(caught.value) and "HTTP 500" in str(caught.value) and "\n" not in str(caught.value)
        results = run(cfg, tmp_path / "run")
    finally:
        server.shutdown()
    lines = [json.loads(line) for line in (tmp_path / "run" / "selections.jsonl").read_text().splitlines()]
    remote_picks = [line for line in lines if line["arm_name"] in remote]
    assert results["complete"] and results["faults"].get("faults/error", 0) == len(remote_picks) == len(lines) == 2
    assert all(line.get("skipped") == "rm_error" for line in remote_picks)
    assert results["skipped_steps"] == {"rm_error": 2}
