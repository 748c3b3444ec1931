"""What the bandit sees (the `context` group: `context=`, `context.dim=`)."""

from __future__ import annotations

import pytest
import torch

from laser.config.checks import CONF_DIR, unknown_group_choice
from laser.errors import LaserConfigError
from laser.policy.policy import Policy
from laser.selection.context import LastTokenContext, MeanEmbeddingContext, SentenceEncoderContext
from laser.tasks.arithmetic import Arithmetic
from laser.tiny import build_tiny_causal_lm, build_tokenizer

PROMPTS = ["Q: What is 3 + 4?\nA:", "Q: Is 7 larger than 2?\nA:", "Q: What is 10 + 1?\nA:"]


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    path = build_tiny_causal_lm(str(tmp_path_factory.mktemp("ctx")), Arithmetic(num_train=50, num_test=10),
                                hidden_size=32, num_layers=1, num_heads=4)
    return Policy(path, lora={"r": 2, "lora_alpha": 4, "lora_dropout": 0.0, "target_modules": ["q_proj"]})


def test_last_token_context_is_the_unit_normalised_policy_embedding(policy):
    encoded = policy.encode(PROMPTS)
    contexts = LastTokenContext()(policy, encoded, PROMPTS)
    expected = torch.nn.functional.normalize(policy.embed(encoded), dim=-1)
    assert torch.allclose(contexts, expected, atol=1e-6)
    assert torch.allclose(contexts.norm(dim=-1), torch.ones(3), atol=1e-6)


def test_mean_embedding_context_averages_input_embeddings_over_real_tokens(policy):
    encoded = policy.encode(PROMPTS)
    contexts = MeanEmbeddingContext()(policy, encoded, PROMPTS)
    table = policy.model.get_input_embeddings().weight
    for i, prompt in enumerate(PROMPTS):  # by hand, from the unpadded ids
        ids = policy.tokenizer(prompt)["input_ids"]
        expected = torch.nn.functional.normalize(table[ids].mean(0), dim=0)
        assert torch.allclose(contexts[i], expected.detach(), atol=1e-5)


def test_random_projection_is_seeded_and_has_the_requested_dimension(policy):
    encoded = policy.encode(PROMPTS)
    a = LastTokenContext(dim=5, seed=1)(policy, encoded, PROMPTS)
    b = LastTokenContext(dim=5, seed=1)(policy, encoded, PROMPTS)
    c = LastTokenContext(dim=5, seed=2)(policy, encoded, PROMPTS)
    assert a.shape == (3, 5) and torch.equal(a, b) and not torch.allclose(a, c)
    state = torch.random.get_rng_state()
    LastTokenContext(dim=5, seed=3)(policy, encoded, PROMPTS)
    assert torch.equal(state, torch.random.get_rng_state())  # the run's RNG is untouched


def test_sentence_encoder_context_from_a_local_folder(policy, tmp_path):
    from transformers import BertConfig, BertModel

    tokenizer = build_tokenizer(PROMPTS, vocab_size=280)
    tokenizer.add_special_tokens({"cls_token": "<s>", "sep_token": "</s>"})
    folder = tmp_path / "encoder"
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    contexts = SentenceEncoderContext(str(folder))(policy, policy.encode(PROMPTS), PROMPTS)
    assert contexts.shape == (3, 16) and torch.allclose(contexts.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert not torch.allclose(contexts[0], contexts[1])


@pytest.mark.parametrize(("make", "match"), [
    (lambda: SentenceEncoderContext(), "context.model_name_or_path"),
    (lambda: LastTokenContext(dim=0), "context.dim=0"),
    (lambda: MeanEmbeddingContext(dim=2.5), "context.dim=2.5"),
])
def test_bad_context_options_are_one_line_errors(make, match):
    with pytest.raises(LaserConfigError, match=match):
        make()


def test_an_unknown_context_is_one_line_naming_the_choices():
    problem = unknown_group_choice(["context=hidden"], CONF_DIR)
    assert problem.startswith("context=hidden: no such choice in conf/context/")
    assert "last_token, mean_embedding, prompt_ngrams, sentence_encoder" in problem


def test_prompt_ngrams_count_hashed_words_and_pairs_and_ignore_which_numbers():
    """"Which is larger, 3 or 52?" -> words which, is, larger, <num>, or, <num> and their 5 pairs, each a
    count in its crc32 bucket; another instance of the same template gives the same vector, a template that
    differs in one word another one."""
    import zlib

    from laser.selection.context import PromptNgramContext

    context = PromptNgramContext(buckets=4096)
    larger, larger_too, smaller = (context.vectors(None, None, [q])[0] for q in
                                   ("Which is larger, 3 or 52?", "which is LARGER, 17 or 9?", "Which is smaller, 3 or 52?"))
    words = ["which", "is", "larger", "<num>", "or", "<num>"]
    expected = torch.zeros(4096)
    for feature in words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]:
        expected[zlib.crc32(feature.encode()) % 4096] += 1.0
    assert torch.equal(larger, expected) and torch.equal(larger, larger_too)
    assert not torch.equal(larger, smaller) and float(larger @ smaller) > 0
    unit = context(None, None, ["Which is larger, 3 or 52?"])
    assert unit.shape == (1, 4096) and float(unit.norm()) == pytest.approx(1.0)
