"""Build a selector from its `bandit` config node (a conf/bandit/*.yaml after composition)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from laser.selection.base import Selector

# Shared selector options (conf/selector_options) that configure the context, not the selector.
CONTEXT_KEYS = ("context", "context_encoder", "context_dim")


def build_selector(cfg: DictConfig | dict, num_arms: int, arm_names: list[str]) -> tuple[Selector, dict[str, Any]]:
    """The selector for a pool of `num_arms` RMs, and the context options (kind, encoder, dim)."""
    from laser.config.instantiate import instantiate

    node = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    node.pop("defaults", None)
    context = {key: node.pop(key, None) for key in CONTEXT_KEYS}
    context["kind"] = context.pop("context") or "last_token"
    return instantiate(node, num_arms=num_arms, arm_names=arm_names), context
