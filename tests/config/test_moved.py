"""Run folders saved before a class moved still resume (laser/config/moved.py): their `_target_`s are
rewritten to where the code lives now, and nothing else changes."""

from __future__ import annotations

import importlib

from hydra.utils import get_method
from omegaconf import OmegaConf

from laser.config.moved import MOVED, current_target, follow_moves


def test_old_targets_point_where_the_code_lives_now():
    assert current_target("laser.policy.policy.load_policy") == "laser.policy.loading.load_policy"
    assert current_target("laser.selection.rewards.heldout.HeldOutAgreement") == \
        "laser.selection.selector_reward.heldout.HeldOutAgreement"
    assert current_target("laser.policy.policy.Policy") == "laser.policy.policy.Policy"  # never moved
    for new in MOVED.values():  # every destination exists
        if new.endswith("."):
            importlib.import_module(new[:-1])
        else:
            assert callable(get_method(new))


def test_a_saved_config_has_its_moved_targets_rewritten_and_nothing_else():
    saved = OmegaConf.create({"seed": 3, "policy": {"_target_": "laser.policy.policy.load_policy", "tiny": {"layers": 2}},
                              "rm_pool": {"arms": [{"_target_": "laser.selection.rewards.base.X", "name": "_target_"}]}})
    moved = follow_moves(saved)
    assert moved.policy._target_ == "laser.policy.loading.load_policy" and moved.policy.tiny.layers == 2
    assert moved.rm_pool.arms[0]._target_ == "laser.selection.selector_reward.base.X"
    assert moved.rm_pool.arms[0].name == "_target_" and moved.seed == 3
    assert saved.policy._target_ == "laser.policy.policy.load_policy"  # the saved file's config is left as it was
