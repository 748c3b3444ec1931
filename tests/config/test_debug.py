"""`+debug=tiny` (conf/debug/tiny.yaml): the test suite's shrink, for users too. It cuts only what its file
lists, every cut is smaller than the default, it beats an experiment added before it, and the tests'
`make_config` shrinks with it (one definition). The shrunk run itself is checked in
tests/end_to_end/test_run.py (2 iterations of 6 steps, as the file says)."""

from __future__ import annotations

from conftest import CONF_DIR, compose_config
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

TINY = OmegaConf.to_container(OmegaConf.load(f"{CONF_DIR}/debug/tiny.yaml"))
SMALLER = {"laser.num_samples", "laser.pairs_per_prompt", "laser.iterations", "data.steps_per_iteration"}


def leaves(node: dict, prefix: str = "") -> dict:
    """Dotted key -> value of every leaf (lists and scalars)."""
    out = {}
    for key, value in node.items():
        out.update(leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def test_debug_is_not_a_default_so_it_is_added_with_a_plus():
    defaults = OmegaConf.load(f"{CONF_DIR}/config.yaml").defaults
    assert not any("debug" in (d if isinstance(d, str) else list(d)) for d in defaults)


def test_tiny_changes_only_its_own_keys_and_cuts_each_one():
    default = leaves(OmegaConf.to_container(compose_config([])))
    tiny = leaves(OmegaConf.to_container(compose_config(["+debug=tiny"])))
    changed = {key for key in default.keys() | tiny.keys() if default.get(key) != tiny.get(key)}
    assert changed == set(leaves(TINY)) and all(tiny[key] == value for key, value in leaves(TINY).items())
    assert SMALLER <= changed and all(tiny[key] < default[key] for key in SMALLER)
    assert default["data.eval_limit"] is None and tiny["data.eval_limit"] < 200  # all 200 test examples -> 40
    assert tiny["trainer.accelerator"] == "cpu"


def test_tiny_added_after_an_experiment_beats_it_and_command_line_values_beat_both():
    experiment = compose_config(["+experiment=legacy_miniature"])
    shrunk = compose_config(["+experiment=legacy_miniature", "+debug=tiny", "laser.num_samples=3"])
    assert experiment.laser.iterations == 5 and shrunk.laser.iterations == TINY["laser"]["iterations"]
    assert shrunk.laser.num_samples == 3 and shrunk.task.categories == experiment.task.categories


def test_the_tests_shrink_their_runs_with_it(make_config):
    make_config(["laser.iterations=1"])
    assert HydraConfig.get().runtime.choices["debug"] == "tiny"
