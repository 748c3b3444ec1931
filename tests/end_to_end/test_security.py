"""Security defaults: no remote code, no pickled weights, no secrets in outputs, plain checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import CONF_DIR, compose_config
from fake_servers import FakeVLLM
from omegaconf import OmegaConf

from laser.errors import LaserConfigError
from laser.policy.policy import Policy
from laser.run import run
from laser.tasks.arithmetic import Arithmetic
from laser.tiny import build_tiny_causal_lm

SECRET = "planted-secret-7f3a9c"


def _all_trust_remote_code_values(node) -> list:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            found += [value] if key == "trust_remote_code" else _all_trust_remote_code_values(value)
    elif isinstance(node, list):
        for value in node:
            found += _all_trust_remote_code_values(value)
    return found


@pytest.mark.parametrize("group", ["policy", "rm_pool"])
def test_no_config_trusts_remote_code(group):
    for yaml_file in sorted(Path(CONF_DIR, group).glob("*.yaml")):
        cfg = compose_config([f"{group}={yaml_file.stem}"])
        values = _all_trust_remote_code_values(OmegaConf.to_container(cfg[group]))
        assert all(v is False for v in values), f"{yaml_file.name} trusts remote code"


def test_pickled_weights_are_refused_unless_allowed(tmp_path):
    from transformers import AutoModelForCausalLM

    folder = Path(build_tiny_causal_lm(str(tmp_path), Arithmetic(num_train=20, num_test=4), hidden_size=16,
                                       num_layers=1, num_heads=2))
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    torch.save(AutoModelForCausalLM.from_pretrained(folder).state_dict(), pickled / "pytorch_model.bin")
    for item in folder.iterdir():  # config and tokenizer files, not the safetensors weights
        if not item.name.endswith(".safetensors"):
            (pickled / item.name).write_bytes(item.read_bytes())
    assert not list(pickled.glob("*.safetensors"))
    with pytest.raises(LaserConfigError, match="pickled"):
        Policy(str(pickled))
    assert Policy(str(pickled), allow_pickle_weights=True).model is not None


def test_planted_secrets_never_reach_any_output(make_config, tmp_path, monkeypatch, caplog):
    """Including a remote arm's bearer token: sent to its server (which requires it), and echoed back by the
    server in an error body, it is in no file, config, result, W&B record or log line."""
    for variable in ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY", "LASER_RM_TOKEN"):
        monkeypatch.setenv(variable, SECRET)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    server = FakeVLLM("rm", lambda item: float(len(item)), token=SECRET)
    server.faults = [(400, server.error(400, f"token {SECRET} may not score"))]  # a careless server echoes it
    monkeypatch.setenv("LASER_VLLM_URL", server.url)
    out = tmp_path / "run"
    try:
        run(make_config(["logger=wandb", "laser.iterations=1", "rm_pool=mixed_example", "bandit=single",
                         "bandit.arm=served_classifier", "rm_pool.models.served_classifier.model=rm",
                         "rm_pool.models.served_classifier.token_env=LASER_RM_TOKEN"], output_dir=out), out)
    finally:
        server.shutdown()
    assert server.posts() and all(r["headers"].get("authorization") == f"Bearer {SECRET}" for r in server.requests)
    assert "may not score" in caplog.text  # the fault was logged, its token masked
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaked == [] and SECRET not in caplog.text


def test_checkpoints_load_with_weights_only(make_config, tmp_path):
    out = tmp_path / "run"
    run(make_config(["laser.iterations=1"], output_dir=out), out)
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["state_dict"] == {}  # only the adapter and the run's state, never the base weights
    assert set(checkpoint["laser"]) >= {"adapter", "selector", "selector_reward", "rm_pool", "rng"}


def test_reward_models_refuse_pickled_weights_unless_allowed(tmp_path):
    from transformers import LlamaForSequenceClassification

    from laser.rewards.base import ScoringBatch
    from laser.rewards.classifier import ClassifierRM
    from laser.tiny import build_untrained_classifier

    folder = Path(build_untrained_classifier(str(tmp_path)))
    pickled = tmp_path / "pickled-rm"
    pickled.mkdir()
    torch.save(LlamaForSequenceClassification.from_pretrained(folder).state_dict(), pickled / "pytorch_model.bin")
    for item in folder.iterdir():
        if not item.name.endswith(".safetensors"):
            (pickled / item.name).write_bytes(item.read_bytes())
    batch = ScoringBatch(prompts=["Q: 1+1?"], responses=[" 2"], examples=[None])
    with pytest.raises(LaserConfigError, match="pickled"):
        ClassifierRM(str(pickled), use_chat_template=False).score(batch)
    assert ClassifierRM(str(pickled), use_chat_template=False, allow_pickle_weights=True).score(batch).shape == (1,)
