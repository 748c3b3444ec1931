"""Every knob a user types is checked before any work, with one line naming key, value and range."""

from __future__ import annotations

import pytest
from conftest import require_data

from laser.errors import LaserConfigError
from laser.run import run


@pytest.mark.parametrize(("override", "message"), [
    ("laser.num_samples=1", "config laser.num_samples=1: must be an integer >= 2"),
    ("laser.num_samples=abc", "config laser.num_samples='abc': must be an integer"),
    ("loss.beta=0", "config loss.beta=0: must be a number > 0"),
    ("loss.label_smoothing=0.5", "loss.label_smoothing=0.5: must be a number in [0, 0.5)"),
    ("laser.micro_batch_size=0", "config laser.micro_batch_size=0: must be null (all sequences at once) or an integer >= 1"),
    ("laser.iterations=0", "config laser.iterations=0: must be an integer >= 1"),
    ("policy.temperature=0", "config policy.temperature=0: must be a number > 0"),
    ("policy.top_p=1.5", "policy.top_p=1.5"),
    ("policy.max_new_tokens=true", "config policy.max_new_tokens=True: must be an integer >= 1"),
    ("data.batch_size=0", "config data.batch_size=0"),
    ("bandit.alpha=-1", "config bandit.alpha=-1: must be a number >= 0"),
    ("bandit.granularity=prompt", "bandit.granularity='prompt': must be batch or instance"),
    ("context.dim=0", "config context.dim=0: must be null or an integer >= 1"),
    ("selector_reward.normaliser.low_quantile=0.9", "low_quantile=0.9 must be below high_quantile=0.8"),
])
def test_bad_knobs_fail_before_any_work_in_one_line(override, message, make_config, tmp_path, monkeypatch):
    import laser.run as entry

    monkeypatch.setattr(entry, "prepare_output_dir", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(LaserConfigError) as error:
        run(make_config([override]), tmp_path / "run")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_an_empty_pool_is_refused(make_config, tmp_path):
    overrides = ["rm_pool.models.arith_judge=null", "rm_pool.models.compare_judge=null", "rm_pool.models.noise=null"]
    with pytest.raises(LaserConfigError, match="K >= 1"):
        run(make_config(overrides), tmp_path / "run")


def test_fsdp_with_the_vllm_backend_is_refused_in_one_line(make_config, tmp_path):
    with pytest.raises(LaserConfigError, match="trainer=fsdp with policy.generation_backend=vllm") as error:
        run(make_config(["trainer=fsdp", "policy.generation_backend=vllm"]), tmp_path / "run")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("overrides", "message"), [
    (["data.batch_size=0"], r"data\.batch_size=0: must be an integer >= 1"),
    (["policy.dtype=float13"], r"policy\.dtype='float13': must be one of float32, bfloat16, float16"),
    (["selector_reward.normaliser.low_quantile=0.9"], r"low_quantile=0\.9 must be below high_quantile=0\.8"),
    (["bandit=single", "bandit.arm=no_such_rm"],
     r"bandit\.arm='no_such_rm' .*valid names: \['arith_judge', 'compare_judge', 'noise'\]"),
    (["laser.pairs_per_prompt=0"], r"laser\.pairs_per_prompt=0: must be an integer >= 1"),
])
def test_malformed_config_value_is_one_line_naming_it(make_config, tmp_path, overrides, message):
    with pytest.raises(LaserConfigError, match=message) as caught:
        run(make_config(overrides), tmp_path / "run")
    assert "\n" not in str(caught.value)


def test_unknown_gsm8k_extraction_lists_the_valid_ones(make_config, tmp_path):
    data = require_data("gsm8k")
    cfg = make_config(["task=gsm8k", f"task.data_dir={data}", "task.extraction=nope"])
    with pytest.raises(LaserConfigError, match=r"task\.extraction='nope' is not one of \['strict', 'flexible'\]"):
        run(cfg, tmp_path / "run")


@pytest.mark.parametrize("override", ["laser.beta=0.2", "laser.nll_weight=0", "+laser.label_smoothing=0.1"])
def test_a_loss_knob_under_its_old_key_names_the_new_one_in_one_line(override, make_config, tmp_path):
    """`laser.beta=` on the command line (Hydra alone would say "Key 'beta' is not in struct"), and an old key
    that reaches the composed config (`+laser.beta=`, or an experiment file that still sets it)."""
    from laser.config.checks import CONF_DIR, unknown_group_choice

    key, value = override.lstrip("+").split("=")
    expected = f"config {key}={value} moved: the loss is its own config group (conf/loss/), set loss.{key[6:]}={value}"
    assert unknown_group_choice([override], CONF_DIR).startswith(expected)
    if override.startswith("+"):
        with pytest.raises(LaserConfigError) as error:
            run(make_config([override]), tmp_path / "run")
        assert str(error.value).startswith(expected) and "\n" not in str(error.value)
