"""A missing model fails before any training, in one line naming every missing model (laser/config/preflight.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import compose_config

from laser.config.preflight import check_models, local_problem, model_references
from laser.errors import LaserConfigError
from laser.rewards.likelihood import LikelihoodRM
from laser.rewards.noisy import NoisyRM
from laser.rewards.pool import RewardModelPool
from laser.run import run


def hub_cache_entry(cache: Path, repo_id: str) -> None:
    """A model as `huggingface_hub` caches it: refs/main names a snapshot that holds config.json."""
    folder = cache / "hub" / f"models--{repo_id.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("abc123")
    (folder / "snapshots" / "abc123").mkdir(parents=True)
    (folder / "snapshots" / "abc123" / "config.json").write_text("{}")


def test_every_model_reference_is_found_and_the_context_encoder_only_where_used():
    cfg = {"policy": {"model_name_or_path": "org/policy", "tiny": None},
           "rm_pool": {"models": {"a": {"model_name_or_path": "org/rm-a"},
                                  "b": {"base": {"model_name_or_path": "/x/rm-b", "tokenizer_name_or_path": "/x/tok"}},
                                  "c": {"_target_": "laser.rewards.verifier.VerifierRM"}}},
           "task": {"judge": {"rm": {"model_name_or_path": "org/judge", "reference_name_or_path": "org/ref"}}},
           "context": {"_target_": "laser.selection.context.LastTokenContext", "dim": None}}
    found = list(model_references(cfg))
    assert found == [("policy.model_name_or_path", "org/policy", "model"),
                     ("rm_pool.models.a.model_name_or_path", "org/rm-a", "model"),
                     ("rm_pool.models.b.base.model_name_or_path", "/x/rm-b", "weights"),
                     ("rm_pool.models.b.base.tokenizer_name_or_path", "/x/tok", "tokenizer"),
                     ("task.judge.rm.model_name_or_path", "org/judge", "model"),
                     ("task.judge.rm.reference_name_or_path", "org/ref", "weights")]
    cfg["context"] = {"_target_": "laser.selection.context.SentenceEncoderContext", "model_name_or_path": "/enc"}
    assert ("context.model_name_or_path", "/enc", "model") in list(model_references(cfg))


def test_a_local_folder_must_hold_config_tokenizer_and_safetensors(tmp_path):
    folder = tmp_path / "model"
    assert local_problem(str(folder), "model") == "no such folder"
    folder.mkdir()
    assert local_problem(str(folder), "model") == "no config.json, no tokenizer files, no weights (*.safetensors)"
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    assert local_problem(str(folder), "model") == "no tokenizer files"
    assert local_problem(str(folder), "weights") is None  # its tokenizer comes from elsewhere
    (folder / "tokenizer.json").write_text("{}")
    assert local_problem(str(folder), "model") is None


def test_one_line_names_every_missing_model_and_a_cached_hub_id_passes(offline_hub, tmp_path):
    hub_cache_entry(offline_hub, "org/cached-rm")
    cfg = {"policy": {"model_name_or_path": str(tmp_path / "nowhere")},
           "rm_pool": {"models": {"a": {"model_name_or_path": "org/cached-rm"},
                                  "b": {"model_name_or_path": "org/missing-1"},
                                  "c": {"model_name_or_path": "org/missing-2"}}}}
    with pytest.raises(LaserConfigError) as caught:
        check_models(cfg)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("3 model(s) the run needs cannot be loaded")
    for missing in ("policy.model_name_or_path=", "org/missing-1", "org/missing-2", "HF_HUB_OFFLINE"):
        assert missing in message
    assert "cached-rm" not in message
    del cfg["policy"], cfg["rm_pool"]["models"]["b"], cfg["rm_pool"]["models"]["c"]
    assert check_models(cfg) == 1


def test_an_offline_paper_pool_is_refused_before_any_model_is_built(offline_hub, tmp_path):
    """The measured failure: `rm_pool=reasoning_7b` without the hub trained until the bandit first picked
    the missing RM. Now it stops before the folder is claimed or any model is built. (In-process: the CLI
    prints any such error as its one `laser: error:` line with exit 2, tests/end_to_end/test_command_line.py.)"""
    out, cache = tmp_path / "run", tmp_path / "c"
    with pytest.raises(LaserConfigError) as caught:
        run(compose_config(["rm_pool=reasoning_7b"], output_dir=out, cache_dir=cache), out)
    message = str(caught.value)
    assert "\n" not in message and message.count("allenai/OLMo-7B-0724-Instruct-hf") == 1
    assert "4 model(s)" in message
    assert not (out / "selections.jsonl").exists() and not (out / "run.lock").exists()
    assert not cache.exists()  # no policy was built either


def test_rm_path_that_does_not_exist_fails_before_any_model_is_built(make_config, tmp_path, monkeypatch):
    def no_policy(*args, **kwargs):
        raise AssertionError("the policy was loaded before the RM pool was checked")

    monkeypatch.setattr("laser.policy.loading.load_policy", no_policy)
    cfg = make_config(["rm_pool=oracle", "+rm_pool.models.bad._target_=laser.rewards.classifier.ClassifierRM",
                       "+rm_pool.models.bad.model_name_or_path=/no/such/rm", "bandit=single", "bandit.arm=bad"])
    with pytest.raises(LaserConfigError, match=r"rm_pool\.models\.bad\.model_name_or_path=/no/such/rm: no such folder"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "selections.jsonl").exists()  # no step was taken


def test_pool_checks_local_paths_of_wrapped_rms_but_leaves_hub_ids_lazy(tmp_path):
    missing = str(tmp_path / "no_such_lm")
    with pytest.raises(LaserConfigError, match=r"rm_pool\.models\.judge: .*" + re.escape(repr(missing))):
        RewardModelPool({"judge": NoisyRM(base=LikelihoodRM(missing))})
    pool = RewardModelPool({"hub": LikelihoodRM("some-org/some-rm")})  # no hub access needed yet
    assert pool.names == ["hub"] and pool[0].model is None
