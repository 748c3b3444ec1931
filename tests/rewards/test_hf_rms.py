"""Hugging Face RMs on tiny locally built Llamas: the classifier, the likelihood RM, the implicit DPO
reward, lazy loading and token accounting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import word_level_llamas

from laser.errors import LaserConfigError
from laser.rewards.base import RewardModel, ScoringBatch
from laser.rewards.classifier import ClassifierRM
from laser.rewards.implicit_dpo import ImplicitDPORM
from laser.rewards.likelihood import LikelihoodRM, split_prompt_tokens
from laser.rewards.noisy import NoisyRM
from laser.rewards.pool import RewardModelPool
from laser.rewards.verifier import VerifierRM
from laser.tasks.base import Example

WORDS = "what is two plus three four ? the answer five six seven yes no user assistant : maybe"
CHAT_TEMPLATE = (
    "<s> {% for m in messages %}{{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}assistant : {% endif %}"
)


PROMPTS = ["what is two plus three ?", "is four six ?", "what is two ?", "seven ?", "yes or no ?"]
RESPONSES = ["the answer is five", "no", "two plus two is four maybe", "seven seven", "yes yes no"]


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory) -> dict[str, Path]:
    """A word-level tokenizer (no pad token) and tiny random Llamas, saved like hub checkpoints."""
    return word_level_llamas(tmp_path_factory, WORDS, {"classifier": ("classifier", 0), "causal": ("causal", 1)})


def hf_batch(n: int = 5) -> ScoringBatch:
    return ScoringBatch(
        PROMPTS[:n], RESPONSES[:n], [Example(str(i), p, "") for i, p in enumerate(PROMPTS[:n])]
    )


def one_at_a_time(rm: RewardModel) -> torch.Tensor:
    pairs = zip(PROMPTS, RESPONSES, strict=True)
    return torch.cat([rm.score(ScoringBatch([p], [r], [Example("0", p, "")])) for p, r in pairs])


@pytest.mark.parametrize("chat", [False, True])
def test_classifier_batched_equals_one_at_a_time(tiny_hf, chat):
    rm = ClassifierRM(str(tiny_hf["classifier"]), batch_size=3)
    rm.load()
    assert rm.tokenizer.pad_token == "</s>" and rm.model.config.pad_token_id == rm.tokenizer.eos_token_id
    if chat:
        rm.tokenizer.chat_template = CHAT_TEMPLATE
    batched = rm.score(hf_batch())
    assert batched.shape == (5,) and batched.dtype == torch.float32 and batched.unique().numel() == 5
    torch.testing.assert_close(batched, one_at_a_time(rm), atol=1e-5, rtol=0)


def hand_mean_logprob(model, prompt_ids: list[int], response_ids: list[int]) -> float:
    ids = torch.tensor([prompt_ids + response_ids])
    logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    picked = [logprobs[t - 1, ids[0, t]].item() for t in range(len(prompt_ids), ids.shape[1])]
    return sum(picked) / len(picked)


@pytest.mark.parametrize("chat", [False, True])
def test_likelihood_matches_a_direct_forward_pass_and_batching(tiny_hf, chat):
    rm = LikelihoodRM(str(tiny_hf["causal"]), batch_size=2)
    rm.load()
    tok = rm.tokenizer
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    batched = rm.score(hf_batch())
    torch.testing.assert_close(batched, one_at_a_time(rm), atol=1e-5, rtol=0)
    for i, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES, strict=True)):
        if chat:  # prompt = everything up to "assistant :", response = its words plus "</s>"
            prompt_ids = tok(f"<s> user : {prompt} </s> assistant : ", add_special_tokens=False).input_ids
            response_ids = tok(f"{response} </s>", add_special_tokens=False).input_ids
        else:  # prompt gets BOS; the response is followed by eos
            prompt_ids = tok(prompt).input_ids
            response_ids = tok(response, add_special_tokens=False).input_ids + [tok.eos_token_id]
        assert batched[i].item() == pytest.approx(
            hand_mean_logprob(rm.model, prompt_ids, response_ids), abs=1e-5
        )
    if not chat:  # without length normalisation the score is the sum over the response's tokens
        summed = LikelihoodRM(str(tiny_hf["causal"]), normalise_by_length=False).score(hf_batch(1))
        n_tokens = len(tok(RESPONSES[0], add_special_tokens=False).input_ids) + 1  # + eos
        assert summed.item() == pytest.approx(batched[0].item() * n_tokens, abs=1e-4)


def test_likelihood_cuts_the_middle_of_the_prompt_keeping_the_response(tiny_hf):
    rm = LikelihoodRM(str(tiny_hf["causal"]), use_chat_template=False, max_length=8)
    rm.load()
    tok = rm.tokenizer
    batch = ScoringBatch([PROMPTS[0]], [RESPONSES[0]], [Example("0", PROMPTS[0], "")])
    [(ids, n_prompt)] = rm.prepare(batch)
    # 6 prompt ids (BOS + 5 words) + 4 response words + eos = 11 > 8: the response's 5 ids stay whole and
    # the prompt keeps its first 2 ids (BOS, "what") and its last 1 ("?").
    response_ids = tok("the answer is five", add_special_tokens=False).input_ids + [tok.eos_token_id]
    assert ids == tok("what ?").input_ids + response_ids and n_prompt == 3
    assert rm.responses_cut == 0


def test_split_prompt_tokens_keeps_the_response_as_the_suffix_when_bpe_merges_across():
    from tokenizers import Tokenizer, models, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.train_from_iterator(["ab"] * 50, trainers.BpeTrainer(special_tokens=["<unk>"], vocab_size=10))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    a, b, ab = (tokenizer.convert_tokens_to_ids(t) for t in ("a", "b", "ab"))
    assert tokenizer("ab").input_ids == [ab]  # tokenised together, the boundary disappears
    assert split_prompt_tokens(tokenizer, "a", "b", add_special_tokens=False) == ([a, b], 1)
    assert split_prompt_tokens(tokenizer, "ab", "a", add_special_tokens=False) == ([ab, a], 1)


@pytest.mark.parametrize("cls", [ClassifierRM, LikelihoodRM])
def test_hf_rms_load_lazily_and_name_a_missing_path(tmp_path, cls):
    missing = str(tmp_path / "no_such_model")
    rm = cls(missing)  # nothing happens until the first score
    with pytest.raises(LaserConfigError, match=re.escape(missing)):
        rm.score(hf_batch(1))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LaserConfigError, match="config.json"):
        cls(str(empty)).score(hf_batch(1))
    with pytest.raises(LaserConfigError, match="float33"):
        cls(missing, dtype="float33")


# ---- implicit DPO reward and token accounting ------------------------------------------------------------


LLAMA_WORDS = "what is two plus three four ? the answer five six seven yes no maybe"
LLAMA_PROMPTS = ["what is two plus three ?", "is four six ?", "what is two ?", "seven ?"]
LLAMA_RESPONSES = ["the answer is five", "no", "two plus two is four maybe", "seven seven seven"]


@pytest.fixture(scope="module")
def llamas(tmp_path_factory) -> dict[str, str]:
    """A word-level tokenizer and three tiny Llamas: a "policy", a different "reference", a classifier."""
    paths = word_level_llamas(tmp_path_factory, LLAMA_WORDS, {"policy": ("causal", 0), "reference": ("causal", 1),
                                                        "classifier": ("classifier", 2)})
    return {name: str(path) for name, path in paths.items()}


def text_batch(n: int = len(LLAMA_PROMPTS)) -> ScoringBatch:
    examples = [Example(str(i), p, "") for i, p in enumerate(LLAMA_PROMPTS[:n])]
    return ScoringBatch(LLAMA_PROMPTS[:n], LLAMA_RESPONSES[:n], examples)


def summed_response_logprob(model, prompt_ids: list[int], response_ids: list[int]) -> float:
    """Direct forward pass on one unpadded sequence: sum of log p(response token | everything before)."""
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    return sum(logprobs[t - 1, ids[0, t]].item() for t in range(len(prompt_ids), ids.shape[1]))


def test_implicit_dpo_equals_beta_times_the_hand_computed_log_ratio(llamas):
    rm = ImplicitDPORM(llamas["policy"], llamas["reference"], beta=0.1, batch_size=3)
    scores = rm.score(text_batch())
    assert scores.shape == (4,) and scores.dtype == torch.float32
    tok = rm.tokenizer
    for i, (prompt, response) in enumerate(zip(LLAMA_PROMPTS, LLAMA_RESPONSES, strict=True)):
        prompt_ids = tok(prompt).input_ids  # BOS + prompt (no chat template here)
        response_ids = tok(response, add_special_tokens=False).input_ids + [tok.eos_token_id]
        ratio = (summed_response_logprob(rm.model, prompt_ids, response_ids)
                 - summed_response_logprob(rm.reference, prompt_ids, response_ids))
        assert scores[i].item() == pytest.approx(0.1 * ratio, abs=1e-5)
    assert scores.abs().min() > 1e-3  # the two models really differ
    # beta only rescales; length normalisation divides by the response's token count (+ eos).
    plain = ImplicitDPORM(llamas["policy"], llamas["reference"]).score(text_batch())
    torch.testing.assert_close(plain * 0.1, scores, atol=1e-5, rtol=0)
    mean = ImplicitDPORM(llamas["policy"], llamas["reference"], normalise_by_length=True).score(text_batch(1))
    assert mean.item() == pytest.approx(plain[0].item() / 5, abs=1e-5)  # "the answer is five" + eos


def test_implicit_dpo_of_a_model_against_itself_is_zero(llamas):
    scores = ImplicitDPORM(llamas["policy"], llamas["policy"], batch_size=2).score(text_batch())
    torch.testing.assert_close(scores, torch.zeros(4), atol=1e-6, rtol=0)


def test_implicit_dpo_loads_lazily_and_names_a_missing_reference(llamas, tmp_path):
    missing = str(tmp_path / "no_reference")
    with pytest.raises(LaserConfigError, match=re.escape(missing)):
        RewardModelPool({"dpo": ImplicitDPORM(llamas["policy"], missing)})  # checked when the pool is built
    rm = ImplicitDPORM(llamas["policy"], llamas["reference"])
    assert rm.model is None and rm.reference is None
    with pytest.raises(LaserConfigError, match="beta"):
        ImplicitDPORM(llamas["policy"], llamas["reference"], beta=0)


def test_hf_rms_count_non_pad_input_tokens(llamas):
    rm = LikelihoodRM(llamas["policy"], batch_size=3)
    assert rm.tokens_processed == 0
    rm.score(text_batch())
    expected = sum(len(rm.encode(p, r)[0]) for p, r in zip(LLAMA_PROMPTS, LLAMA_RESPONSES, strict=True))
    assert rm.tokens_processed == expected  # padding (two chunks of uneven lengths) is not counted
    dpo = ImplicitDPORM(llamas["policy"], llamas["reference"], batch_size=3)
    dpo.score(text_batch())
    assert dpo.tokens_processed == 2 * expected  # policy and reference each read every token
    classifier = ClassifierRM(llamas["classifier"], batch_size=3)
    classifier.score(text_batch())
    texts = [p + r for p, r in zip(LLAMA_PROMPTS, LLAMA_RESPONSES, strict=True)]
    assert classifier.tokens_processed == sum(len(classifier.tokenizer(t).input_ids) for t in texts)


def test_pool_reports_tokens_per_rm_and_keeps_them_across_a_resume(llamas):
    def build() -> RewardModelPool:
        return RewardModelPool({"lm": LikelihoodRM(llamas["policy"]),
                                "noisy_lm": NoisyRM(LikelihoodRM(llamas["policy"])), "oracle": VerifierRM()})

    pool = build()
    pool.score([0, 1], text_batch())
    tokens = pool.token_counts()
    assert tokens["lm"] > 0 and tokens["noisy_lm"] == tokens["lm"] and tokens["oracle"] == 0
    assert pool.counters()["lm"]["tokens"] == tokens["lm"]
    resumed = build()
    resumed.load_state_dict(pool.state_dict())
    assert resumed.token_counts() == tokens
    resumed.score([0], text_batch())
    assert resumed.token_counts()["lm"] == 2 * tokens["lm"]  # counted from where the checkpoint left off
