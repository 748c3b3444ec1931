"""Shared fixtures: compose the real Hydra config, shrink it, and run jobs in a temp folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"

# Tiny models on 2 busy cores run far faster single-threaded (thread hand-offs dominate).
torch.set_num_threads(1)

# A small, fast version of the embedded default (a few seconds per run).
TINY_OVERRIDES = [
    "laser.iterations=2",
    "data.steps_per_iteration=6",
    "data.eval_limit=40",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
]


def compose_config(output_dir: Path, overrides: list[str], cache_dir: Path, config_name: str = "config") -> DictConfig:
    """The real config (as `python -m laser.run` composes it), with HydraConfig set so that
    `${hydra:...}` interpolations resolve, writing into `output_dir`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
        cfg.paths.cache_dir = str(cache_dir)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One model cache per test session: the tiny model and its warm start are built once."""
    return tmp_path_factory.mktemp("laser-cache")


@pytest.fixture
def make_config(tmp_path, cache_dir):
    def make(overrides: list[str] = (), output_dir: Path | None = None, tiny: bool = True) -> DictConfig:
        out = output_dir or tmp_path / "run"
        return compose_config(out, (TINY_OVERRIDES if tiny else []) + list(overrides), cache_dir)

    return make


def require_data(name: str) -> Path:
    path = DATA_DIR / name
    if not path.exists():
        pytest.skip(f"benchmark data not found at {path} (see ../shared/data/README.md)")
    return path


def word_level_llamas(tmp_path_factory, words: str, models: dict[str, tuple[str, int]],
                      **config_overrides) -> dict[str, Path]:
    """A word-level tokenizer over `words` (no pad token, BOS prepended) and tiny random Llamas
    (name -> ("causal" | "classifier", seed)), each saved like a hub checkpoint. A large init range
    makes outputs differ between tokens, so a padding bug would show. `config_overrides` replace
    LlamaConfig fields (e.g. hidden_size)."""
    from tokenizers import Tokenizer, pre_tokenizers, processors, trainers
    from tokenizers import models as tokenizer_models
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        LlamaForSequenceClassification,
        PreTrainedTokenizerFast,
    )

    tok = Tokenizer(tokenizer_models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([words], trainers.WordLevelTrainer(special_tokens=["<unk>", "<s>", "</s>"]))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fields = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64, initializer_range=0.5,
                  num_labels=1)
    config = LlamaConfig(**{**fields, **config_overrides})
    classes = {"causal": LlamaForCausalLM, "classifier": LlamaForSequenceClassification}
    paths = {}
    for name, (kind, seed) in models.items():
        torch.manual_seed(seed)
        paths[name] = tmp_path_factory.mktemp(name)
        classes[kind](config).save_pretrained(paths[name])
        tokenizer.save_pretrained(paths[name])
    return paths
