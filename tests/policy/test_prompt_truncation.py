"""How prompts are cut to the policy's budget (`laser.policy.prompt_truncation`): the cuts by hand, a long
passage whose question and both ends survive a middle cut, the chat template, and the model-window budget."""

from __future__ import annotations

import copy

import pytest
import torch

from laser.errors import LaserConfigError
from laser.policy.policy import Policy
from laser.policy.prompt_truncation import encode_prompts, prompt_budget, truncate_ids
from laser.tasks.arithmetic import Arithmetic
from laser.tiny import build_tiny_causal_lm

LORA = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
# A ChatML-style template (the tiny tokenizer has none): a user header, the prompt, an assistant header.
CHAT_TEMPLATE = ("{% for m in messages %}<|user|>\n{{ m['content'] }}\n<|end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
START, END = "PASSAGE-BEGINS-HERE", "PASSAGE-ENDS-HERE"
QUESTION = "Question: what is 3 + 4?\nAnswer:"


def long_prompt(filler_words: int = 400) -> str:
    """A LongBench-shaped prompt: instruction, a passage with distinct first and last words, question."""
    passage = " ".join([START] + [f"filler {i % 10} and" for i in range(filler_words)] + [END])
    return f"Answer from the passage.\n\n{passage}\n\n{QUESTION}"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> str:
    task = Arithmetic(num_train=50, num_test=10)
    return build_tiny_causal_lm(str(tmp_path_factory.mktemp("models")), task=task, hidden_size=32,
                                num_layers=1, num_heads=4)


@pytest.fixture(scope="module")
def tokenizer(model_path):
    return Policy(model_path, lora=LORA, max_new_tokens=4).tokenizer


def decoded(tokenizer, enc: dict[str, torch.Tensor], row: int = 0) -> str:
    ids = enc["input_ids"][row][enc["attention_mask"][row].bool()].tolist()
    return tokenizer.decode(ids)


def test_truncate_ids_by_hand():
    ids = list(range(10))
    assert truncate_ids(ids, 4, "left") == [6, 7, 8, 9]
    assert truncate_ids(ids, 4, "middle") == [0, 1, 8, 9]
    assert truncate_ids(ids, 5, "middle") == [0, 1, 7, 8, 9]  # an odd budget: the extra token goes to the end
    assert truncate_ids(ids, 1, "middle") == [9]
    assert truncate_ids(ids, 10, "middle") == ids and truncate_ids(ids, 99, "left") == ids


@pytest.mark.parametrize(("side", "tokens", "match"), [("right", 4, "truncation_side='right'"),
                                                       ("middle", 0, "max_prompt_tokens=0")])
def test_truncate_ids_refuses_bad_knobs(side, tokens, match):
    with pytest.raises(LaserConfigError, match=match):
        truncate_ids([1, 2, 3], tokens, side)


def test_middle_cut_keeps_the_question_and_both_ends_of_the_passage(model_path):
    policy = Policy(model_path, lora=LORA, max_new_tokens=4, max_prompt_tokens=96, truncation_side="middle")
    prompt = long_prompt()
    assert len(policy.tokenizer(prompt)["input_ids"]) > 4 * 96  # most of the passage must go
    enc = policy.encode([prompt, "Q: 3 + 4 =\nA:"])
    assert enc["attention_mask"][0].sum() == 96
    text = decoded(policy.tokenizer, enc)
    assert QUESTION in text and START in text and END in text and "Answer from the passage." in text
    # the cut from the left (the default) keeps the question and the passage's end, loses its start
    left = Policy(model_path, lora=LORA, max_new_tokens=4, max_prompt_tokens=96)
    text = decoded(left.tokenizer, left.encode([prompt]))
    assert QUESTION in text and END in text and START not in text


def test_middle_cut_leaves_prompts_that_fit_exactly_as_before(tokenizer):
    prompts = ["Q: 3 + 4 =\nA:", "Q: 12 * 7 - 1 =\nA: the answer is"]  # different lengths: left padding
    before = encode_prompts(tokenizer, prompts, 128, "left")
    after = encode_prompts(tokenizer, prompts, 128, "middle")
    assert set(after) == {"input_ids", "attention_mask"}
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_chat_template_wraps_the_prompt_and_survives_a_middle_cut(tokenizer):
    chat = copy.deepcopy(tokenizer)
    chat.chat_template = CHAT_TEMPLATE
    text = decoded(chat, encode_prompts(chat, [long_prompt()], 192, "middle", chat_template=True))
    assert text.startswith("<|user|>\n") and text.endswith(f"{QUESTION}\n<|end|>\n<|assistant|>\n")
    assert START in text and END in text
    short = decoded(chat, encode_prompts(chat, ["Q: 3 + 4 =\nA:"], 128, "left", chat_template=True))
    assert short == "<|user|>\nQ: 3 + 4 =\nA:\n<|end|>\n<|assistant|>\n"  # nothing cut, no BOS added twice
    # a tokenizer without a template (a base model): the prompt as it is, with the tokenizer's BOS
    plain = encode_prompts(tokenizer, ["Q: 3 + 4 =\nA:"], 128, "middle", chat_template=True)
    assert plain["input_ids"][0].tolist() == tokenizer("Q: 3 + 4 =\nA:")["input_ids"]


def test_null_budget_is_the_model_window_minus_the_answer(model_path):
    assert prompt_budget(300, 1024, 8) == 300
    assert prompt_budget(None, 1024, 8) == 1016
    with pytest.raises(LaserConfigError, match="max_position_embeddings"):
        prompt_budget(None, None, 8)
    with pytest.raises(LaserConfigError, match="no room"):
        prompt_budget(None, 16, 16)
    policy = Policy(model_path, lora=LORA, max_new_tokens=24, max_prompt_tokens=None)
    assert policy.max_prompt_tokens == policy.model.config.max_position_embeddings - 24


@pytest.mark.parametrize(("kwargs", "match"), [({"truncation_side": "right"}, "policy.truncation_side='right'"),
                                               ({"chat_template": "yes"}, "policy.chat_template='yes'")])
def test_policy_refuses_bad_prompt_knobs(model_path, kwargs, match):
    with pytest.raises(LaserConfigError, match=match):
        Policy(model_path, lora=LORA, **kwargs)
