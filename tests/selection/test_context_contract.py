"""The contract every context meets, checked for every conf/context/*.yaml: a new context (one class + one
yaml) is picked up here with no list to edit.

Every yaml opens with what it is and how to run it, and `context=<name>` composes and builds a `Context`
seeded by the run's seed. With a tiny policy it embeds a small batch of prompts into one unit vector per
prompt, of width `dim` when the yaml projects, else the vector's own width (the policy's hidden size; a
context that reads its own model, that model's; a hashed one, its buckets). The vectors are the same for
the same prompts (again, from a fresh instance, or in another batch), differ between differently worded
prompts, and leave the run's random stream untouched. A yaml naming a hub model is run on a tiny local one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import CONF_DIR, compose_config
from hydra.utils import get_class
from omegaconf import DictConfig, open_dict

from laser.config.instantiate import instantiate
from laser.config.preflight import looks_local
from laser.policy.policy import Policy
from laser.selection.context import Context
from laser.tasks.arithmetic import Arithmetic
from laser.tiny import build_tiny_causal_lm, build_tokenizer

CONTEXTS = sorted(Path(CONF_DIR, "context").glob("*.yaml"))
# Worded differently (prompt_ngrams counts every number as one word), of different lengths (so batches pad).
PROMPTS = ["Q: Is 37 larger than 52?\nA:", "Q: Which is larger, 37 or 52?\nA:", "Q: Which is smaller, 7 or 5?\nA:",
           "Q: What is 3 + 12?\nA:"]
ENCODER_WIDTH = 24  # the tiny local encoder's hidden size (the policy's is 32): which model a width comes from shows


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> Policy:
    path = build_tiny_causal_lm(str(tmp_path_factory.mktemp("policy")), Arithmetic(num_train=50, num_test=10),
                                hidden_size=32, num_layers=1, num_heads=4)
    return Policy(path, lora={"r": 2, "lora_alpha": 4, "lora_dropout": 0.0, "target_modules": ["q_proj"]})


@pytest.fixture(scope="module")
def local_encoder(tmp_path_factory) -> str:
    """A tiny BERT saved like a hub checkpoint, for a context whose yaml names a hub model."""
    from transformers import BertConfig, BertModel

    tokenizer = build_tokenizer(PROMPTS, vocab_size=280)
    tokenizer.add_special_tokens({"cls_token": "<s>", "sep_token": "</s>"})
    folder = tmp_path_factory.mktemp("encoder")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=ENCODER_WIDTH, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def context_config(path: Path, local_encoder: str, *overrides: str) -> DictConfig:
    """The `context` node `context=<name>` composes, with a hub model swapped for the tiny local one."""
    node = compose_config([f"context={path.stem}", "seed=7", *overrides]).context
    if "model_name_or_path" in node and not looks_local(node.model_name_or_path):
        with open_dict(node):
            node.model_name_or_path = local_encoder
    return node


def own_width(node: DictConfig, policy: Policy) -> int:
    """The width of the unprojected vector: the context's own model's, its buckets, or the policy's."""
    if "model_name_or_path" in node:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(node.model_name_or_path).hidden_size
    return node.get("buckets") or policy.model.config.hidden_size


def embed(context: Context, policy: Policy, prompts: list[str]) -> torch.Tensor:
    return context(policy, policy.encode(prompts), prompts)


@pytest.mark.parametrize("path", CONTEXTS, ids=lambda p: p.stem)
def test_the_yaml_composes_into_a_seeded_context(path: Path, local_encoder: str) -> None:
    text = path.read_text()
    assert text.startswith("#") and "python -m laser.run" in text  # opens with what it is and how to run it
    node = context_config(path, local_encoder)
    assert "dim" in node and node.seed == 7  # every context can project; the run's seed seeds it
    context = instantiate(node)
    assert isinstance(context, Context) and type(context) is get_class(node._target_)


@pytest.mark.parametrize("dim", [None, 5], ids=["as_declared", "dim_5"])
@pytest.mark.parametrize("path", CONTEXTS, ids=lambda p: p.stem)
def test_prompts_become_unit_vectors_of_the_declared_width_the_same_each_time(
        path: Path, dim: int | None, policy: Policy, local_encoder: str) -> None:
    node = context_config(path, local_encoder, *([] if dim is None else [f"context.dim={dim}"]))
    context = instantiate(node)
    state = torch.random.get_rng_state()
    vectors = embed(context, policy, PROMPTS)
    assert torch.equal(state, torch.random.get_rng_state())  # the run's random stream is untouched
    assert vectors.shape == (len(PROMPTS), node.dim or own_width(node, policy)) and vectors.dtype == torch.float32
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(len(PROMPTS)), atol=1e-5)
    assert torch.equal(embed(context, policy, PROMPTS), vectors)  # again
    assert torch.equal(embed(instantiate(node), policy, PROMPTS), vectors)  # a fresh instance, the same seed
    other_batch = [PROMPTS[3], PROMPTS[1]]  # a prompt's vector does not depend on its batch (padding)
    assert torch.allclose(embed(context, policy, other_batch), vectors[[3, 1]], atol=1e-5)
    assert all(not torch.allclose(vectors[i], vectors[j]) for i in range(len(PROMPTS)) for j in range(i))
