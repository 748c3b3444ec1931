"""An RM pool from its config: an `rm_pool` name (composed with conf/config.yaml) or a yaml file, for the
processes that serve a pool outside a training run (`python -m laser.rewards.server`, `laser.rewards.remote`)."""

from __future__ import annotations

from pathlib import Path

from laser.config.checks import CONF_DIR
from laser.errors import LaserConfigError
from laser.rewards.pool import RewardModelPool


def build_pool(name_or_path: str, overrides: list[str] | None = None) -> RewardModelPool:
    """The pool of an rm_pool config name (composed with conf/config.yaml, so `${paths...}` resolve)
    or of a yaml file; `overrides` are Hydra overrides such as "rm_pool.device=cuda:1"."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise LaserConfigError(f"--pool {name_or_path!r}: no such yaml file")
        dotlist = [o.removeprefix("rm_pool.") for o in overrides or []]
        return instantiate(OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(dotlist)))
    names = sorted(p.stem for p in (CONF_DIR / "rm_pool").glob("*.yaml"))
    if name_or_path not in names:
        raise LaserConfigError(f"--pool {name_or_path!r} is not a yaml file or one of {names}")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"rm_pool={name_or_path}", *(overrides or [])])
    return instantiate(cfg.rm_pool)
