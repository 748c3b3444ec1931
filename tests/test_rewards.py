"""Reward models and the RM pool: verifier, noisy wrapper, HF classifier and likelihood RMs, pool."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import word_level_llamas
from hydra.utils import instantiate
from omegaconf import OmegaConf

from laser.errors import LaserConfigError
from laser.rewards.base import RewardModel, ScoringBatch
from laser.rewards.classifier import ClassifierRM
from laser.rewards.errors import RewardOutputError
from laser.rewards.likelihood import LikelihoodRM, split_prompt_tokens
from laser.rewards.noisy import NoisyRM
from laser.rewards.pool import RewardModelPool
from laser.rewards.verifier import VerifierRM
from laser.tasks.base import Example, Task

CONF = Path(__file__).resolve().parents[1] / "conf"


class AnswerTask(Task):
    """A fake task: the answer follows 'answer:'."""

    categories = ("addition", "comparison")

    def train_examples(self) -> list[Example]:
        return []

    def test_examples(self) -> list[Example]:
        return []

    def format_prompt(self, example: Example) -> str:
        return example.question

    def extract_answer(self, response: str) -> str | None:
        match = re.search(r"answer:\s*(\S+)", response)
        return match.group(1) if match else None


class CountingRM(RewardModel):
    """Scores example uid + 2 (outside [0, 1], so a Uniform replacement is recognisable) and records
    what it was asked; `drop_last` makes it return one score too few."""

    def __init__(self, drop_last: bool = False) -> None:
        super().__init__()
        self.items_seen, self.batches_seen, self.moved_to = 0, 0, []
        self.drop_last = drop_last

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        self.items_seen += len(batch)
        self.batches_seen += 1
        scores = [int(e.uid) + 2.0 for e in batch.examples]
        return torch.tensor(scores[:-1] if self.drop_last else scores, dtype=torch.float64)

    def to(self, device):
        self.moved_to.append(str(device))
        return self


def make_batch(categories: list[str], responses: list[str] | None = None) -> ScoringBatch:
    examples = [
        Example(uid=str(i), question=f"q{i}", answer="5", category=c) for i, c in enumerate(categories)
    ]
    responses = responses or ["answer: 5"] * len(examples)
    return ScoringBatch([e.question for e in examples], responses, examples, AnswerTask())


# ---- verifier --------------------------------------------------------------------------------------


def test_verifier_scores_correct_wrong_and_missing_answers():
    batch = make_batch(["addition"] * 3, ["so the answer: 5", "answer: 6", "no idea"])
    assert VerifierRM().score(batch).tolist() == [1.0, 0.0, 0.0]
    assert VerifierRM(partial_credit_for_format=0.25).score(batch).tolist() == [1.0, 0.25, 0.0]


def test_verifier_without_task_raises():
    batch = make_batch(["addition"])
    batch.task = None
    with pytest.raises(ValueError, match="needs the task"):
        VerifierRM().score(batch)


# ---- noisy wrapper ---------------------------------------------------------------------------------


def test_noisy_with_zero_corruption_returns_base_scores_exactly():
    batch = make_batch(["addition", "comparison"] * 5)
    assert torch.equal(NoisyRM(CountingRM()).score(batch), CountingRM().score(batch).float())


def test_full_corruption_never_calls_base_and_is_uniform_noise():
    base = CountingRM()
    scores = NoisyRM(base, corrupt_prob=1.0, seed=3).score(make_batch(["addition"] * 50))
    assert base.items_seen == 0 and base.batches_seen == 0
    assert scores.min() >= 0.0 and scores.max() < 1.0  # base scores are all >= 2
    assert scores.unique().numel() == 50


def test_per_category_corruption_applies_only_to_that_category():
    batch = make_batch(["addition", "comparison"] * 1000)
    base = CountingRM()
    scores = NoisyRM(base, corrupt_prob={"addition": 0.3}, seed=0).score(batch)
    corrupted = scores < 1.0  # base scores are >= 2
    assert not corrupted[1::2].any()  # comparison: missing from the dict and no "default" -> 0
    assert abs(corrupted[0::2].float().mean().item() - 0.3) < 0.05
    assert base.items_seen == 2000 - corrupted.sum().item()  # the base only sees kept items
    # Kept items keep their own base score (the sub-batch is mapped back to the right positions).
    assert torch.equal(scores[~corrupted], CountingRM().score(batch).float()[~corrupted])
    defaulted = NoisyRM(CountingRM(), corrupt_prob={"addition": 0.0, "default": 1.0}).score(batch)
    assert (defaulted[1::2] < 1.0).all() and (defaulted[0::2] >= 2.0).all()


def test_gaussian_noise_has_the_requested_std():
    batch = make_batch(["addition"] * 2000)
    noisy = NoisyRM(CountingRM(), noise_std=0.1, seed=1).score(batch)
    assert abs((noisy - CountingRM().score(batch).float()).std().item() - 0.1) < 0.01


def test_noisy_is_seeded_and_state_dict_continues_the_stream():
    batch = make_batch(["addition", "comparison"] * 20)
    first, second = (NoisyRM(CountingRM(), corrupt_prob=0.5, noise_std=0.1, seed=7) for _ in range(2))
    assert torch.equal(first.score(batch), second.score(batch))
    other = NoisyRM(CountingRM(), corrupt_prob=0.5, noise_std=0.1, seed=8).score(batch)
    assert not torch.equal(other, NoisyRM(CountingRM(), corrupt_prob=0.5, noise_std=0.1, seed=7).score(batch))
    state = first.state_dict()
    expected = first.score(batch)
    resumed = NoisyRM(CountingRM(), corrupt_prob=0.5, noise_std=0.1, seed=0)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.score(batch), expected)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"corrupt_prob": 1.5}, "1.5"),
        ({"corrupt_prob": {"addition": -0.1}}, "'addition'.*-0.1"),
        ({"noise_std": -2.0}, "-2.0"),
    ],
)
def test_noisy_rejects_bad_values_naming_them(kwargs, needle):
    with pytest.raises(LaserConfigError, match=needle):
        NoisyRM(CountingRM(), **kwargs)


# ---- pool ------------------------------------------------------------------------------------------


def test_pool_runs_only_the_chosen_rm_and_counts_it():
    fakes = {"a": CountingRM(), "b": CountingRM(), "c": CountingRM()}
    pool = RewardModelPool(fakes, device="meta")
    assert pool.names == ["a", "b", "c"] and len(pool) == 3 and fakes["b"].name == "b"
    batch = make_batch(["addition"] * 4)
    out = pool.score([1], batch)
    assert list(out) == [1] and out[1].dtype == torch.float32 and out[1].tolist() == [2.0, 3.0, 4.0, 5.0]
    pool.score([1, 2, 1], batch)  # a repeated arm still runs once
    assert [f.batches_seen for f in fakes.values()] == [0, 2, 1]
    assert [f.moved_to for f in fakes.values()] == [[], ["meta"], ["meta"]]  # placed once, on first use
    assert pool.call_counts() == {"a": 0, "b": 8, "c": 4}
    counters = pool.counters()
    assert counters["b"]["batches"] == 2 and counters["b"]["seconds"] >= 0.0 and counters["a"]["calls"] == 0


def test_pool_counts_pure_noise_arm_without_running_its_base():
    base = CountingRM()
    pool = RewardModelPool({"noise": NoisyRM(base, corrupt_prob=1.0)})
    pool.score([0], make_batch(["addition"] * 6))
    assert pool.call_counts() == {"noise": 6} and base.items_seen == 0


def test_pool_rejects_wrong_length_output_naming_the_rm():
    pool = RewardModelPool({"good": CountingRM(), "short": CountingRM(drop_last=True)})
    with pytest.raises(RewardOutputError, match=r"'short'.*\(2,\).*\(3,\)"):
        pool.score([1], make_batch(["addition"] * 3))


def test_pool_unknown_name_lists_the_names():
    pool = RewardModelPool({"a": CountingRM(), "b": CountingRM()})
    assert pool.index("b") == 1
    with pytest.raises(LaserConfigError, match=r"'zzz'.*\['a', 'b'\]"):
        pool.index("zzz")


def test_pool_state_dict_round_trip_restores_counters_and_rm_rng():
    def build() -> RewardModelPool:
        return RewardModelPool({"n": NoisyRM(CountingRM(), corrupt_prob=0.5, seed=4), "c": CountingRM()})

    batch = make_batch(["addition"] * 10)
    pool = build()
    pool.score([0, 1], batch)
    state = pool.state_dict()
    expected = pool.score([0], batch)[0]
    resumed = build()
    resumed.load_state_dict(state)
    assert resumed.call_counts() == {"n": 10, "c": 10}
    assert torch.equal(resumed.score([0], batch)[0], expected)


def test_pool_yamls_instantiate_without_loading_weights():
    pool = instantiate(OmegaConf.load(CONF / "rm_pool" / "tiny.yaml"))
    assert pool.names == ["arith_judge", "compare_judge", "noise"]
    batch = make_batch(["addition", "comparison"] * 200)
    scores = pool.score([0, 1], batch)
    assert (scores[0][0::2] == 1.0).float().mean() > 0.9  # arith_judge: right on addition
    assert (scores[1][1::2] == 1.0).float().mean() > 0.9  # compare_judge: right on comparison
    assert (scores[0][1::2] == 1.0).float().mean() < 0.1  # ... and noise elsewhere
    big = instantiate(OmegaConf.load(CONF / "rm_pool" / "reasoning_7b.yaml"))
    assert big.names == ["zephyr_7b_alpha", "qwen15_7b_chat", "eurus_7b_kto", "olmo_7b_instruct"]
    assert all(big[arm].model is None for arm in range(len(big)))  # nothing loaded yet
    assert instantiate(OmegaConf.load(CONF / "rm_pool" / "oracle.yaml")).names == ["oracle"]


# ---- Hugging Face RMs on a tiny locally built Llama -------------------------------------------------

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


def test_likelihood_truncates_from_the_left_keeping_the_response(tiny_hf):
    rm = LikelihoodRM(str(tiny_hf["causal"]), use_chat_template=False, max_length=4)
    rm.load()
    ids, n_prompt = rm.encode("what is two plus three ?", "the answer is five")
    # 6 prompt ids (BOS + 5 words) + 4 response words + eos = 11; the last 4 are kept, all response.
    assert ids == rm.tokenizer("answer is five", add_special_tokens=False).input_ids + [
        rm.tokenizer.eos_token_id
    ]
    assert n_prompt == 0


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
