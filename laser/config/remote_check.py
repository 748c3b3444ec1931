"""Before any training: every RM that scores on a server answers (a server that is down fails in seconds).

`check_models` (laser.config.preflight) checks the models a run loads; the arms of `rm_pool` that score
over HTTP (`laser.rewards.http_client.RemoteArm`: laser's server, vLLM, an OpenRLHF reward server, an
OpenAI-compatible judge) load nothing here, so without this check a run whose RM server is down would
train until the bandit first picked that arm, then count a fault on every pick. `check_remote_arms`
builds each such arm from its config node (which contacts nothing) and asks its server once (`preflight`:
`GET /health` or `/v1/models`, whatever the server has), all at once, each bounded by `timeout_s`. Every
arm that cannot serve is named in one line (`LaserConfigError`, exit code 2 from the entry points).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from omegaconf import DictConfig, OmegaConf

from laser.errors import LaserConfigError


def remote_arm_nodes(node: Any, prefix: str = "rm_pool.") -> Iterator[tuple[str, dict]]:
    """(dotted key, config node) of every node under `node` whose `_target_` is a `RemoteArm` class."""
    from hydra.utils import get_object

    from laser.rewards.http_client import RemoteArm

    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from remote_arm_nodes(item, f"{prefix}{index}.")
        return
    if not isinstance(node, dict):
        return
    target = node.get("_target_")
    if isinstance(target, str):
        try:
            found = get_object(target)
        except Exception:  # a target that does not import: instantiate says so later
            found = None
        is_remote = isinstance(found, type) and issubclass(found, RemoteArm)
        if is_remote:
            yield prefix.rstrip("."), node
            return
    for key, value in node.items():
        yield from remote_arm_nodes(value, f"{prefix}{key}.")


def check_remote_arms(cfg: DictConfig | dict, timeout_s: float = 10.0) -> int:
    """Raise one `LaserConfigError` naming every remote arm of `cfg.rm_pool` whose server cannot serve;
    returns how many arms were asked. Probes run in parallel, so the check takes at most ~`timeout_s`."""
    from laser.config.instantiate import instantiate

    root = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    nodes = list(remote_arm_nodes(root.get("rm_pool")))
    if not nodes:
        return 0
    arms = []
    for key, node in nodes:
        arm = instantiate(node)  # contacts nothing; a bad knob is a LaserConfigError here
        arm.check()  # its token variable is set
        arm.endpoint.timeout_s = min(arm.endpoint.timeout_s, float(timeout_s))
        arms.append((key, arm))
    with ThreadPoolExecutor(max_workers=min(8, len(arms))) as pool:
        problems = list(pool.map(lambda item: item[1].preflight(), arms))
    failed = [f"{key}: {problem}" for (key, _), problem in zip(arms, problems, strict=True) if problem]
    if failed:
        raise LaserConfigError(f"{len(failed)} remote RM(s) cannot serve: {'; '.join(failed)}. Start the server "
                               "first (the rm_pool yaml's header says how) or drop the arm (rm_pool.models.<name>=null)")
    return len(arms)
