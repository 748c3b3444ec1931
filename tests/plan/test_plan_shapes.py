"""The model shapes the plan traces (laser/plan/shapes.py): shipped for the paper's models, right by
their public parameter counts, a local folder's own, and one line for a model found nowhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CONF_DIR

from laser.errors import LaserConfigError
from laser.plan.shapes import model_config, shipped_shapes
from laser.plan.trace import ModelSpec, meta_model

PAPER_CONFIGS = ["policy/llama3_8b.yaml", "rm_pool/reasoning_7b.yaml", "rm_pool/instruction_8b.yaml",
                 "rm_pool/longcontext_7b.yaml"]
# Parameter counts as the models' hub pages state them (billions, two decimals).
PUBLIC_PARAMETERS = {
    "meta-llama/Meta-Llama-3-8B": 8.03, "HuggingFaceH4/zephyr-7b-alpha": 7.24, "openbmb/Eurus-7b-kto": 7.24,
    "Qwen/Qwen1.5-7B-Chat": 7.72, "allenai/OLMo-7B-0724-Instruct-hf": 6.89, "Qwen/Qwen2.5-7B-Instruct": 7.62,
    "mistralai/Mistral-7B-Instruct-v0.2": 7.24, "meta-llama/Llama-3.1-8B-Instruct": 8.03,
    "Skywork/Skywork-Reward-Llama-3.1-8B": 7.50, "sfairXC/FsfairX-LLaMA3-RM-v0.1": 7.50,
}


def paper_model_ids() -> set[str]:
    ids = set()
    for name in PAPER_CONFIGS:
        text = (Path(CONF_DIR) / name).read_text()
        ids |= {line.split(":", 1)[1].split("#")[0].strip() for line in text.splitlines()
                if line.strip().startswith("model_name_or_path:")}
    return ids


def test_every_model_of_the_paper_configs_ships_its_shape():
    assert paper_model_ids() <= set(shipped_shapes())


@pytest.mark.parametrize("repo_id", sorted(PUBLIC_PARAMETERS))
def test_a_shipped_shape_has_the_models_public_parameter_count(repo_id):
    config = model_config(repo_id)
    auto = "AutoModelForSequenceClassification" if "Reward" in repo_id or "RM" in repo_id else "AutoModelForCausalLM"
    model = meta_model(ModelSpec(config, auto))
    count = sum(p.numel() for p in model.parameters())
    assert round(count / 1e9, 2) == PUBLIC_PARAMETERS[repo_id]


def test_a_local_folder_uses_its_own_config(tmp_path):
    config = json.loads((Path(__file__).parents[2] / "laser/plan/shapes/meta-llama--Meta-Llama-3-8B/config.json")
                        .read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    assert model_config(str(tmp_path)).num_hidden_layers == 3


def test_a_hub_id_found_nowhere_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(LaserConfigError) as error:
        model_config("some-org/unknown-model-7b")
    message = str(error.value)
    assert "\n" not in message and "'some-org/unknown-model-7b'" in message and "laser/plan/shapes/" in message
