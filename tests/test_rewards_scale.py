"""RMs at scale: the implicit DPO reward, token accounting, and where a pool keeps its RMs' weights."""

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
from laser.rewards.implicit_dpo import ImplicitDPORM
from laser.rewards.likelihood import LikelihoodRM
from laser.rewards.noisy import NoisyRM
from laser.rewards.pool import RewardModelPool
from laser.rewards.verifier import VerifierRM
from laser.tasks.base import Example

CONF = Path(__file__).resolve().parents[1] / "conf"
WORDS = "what is two plus three four ? the answer five six seven yes no maybe"
PROMPTS = ["what is two plus three ?", "is four six ?", "what is two ?", "seven ?"]
RESPONSES = ["the answer is five", "no", "two plus two is four maybe", "seven seven seven"]


@pytest.fixture(scope="module")
def llamas(tmp_path_factory) -> dict[str, str]:
    """A word-level tokenizer and three tiny Llamas: a "policy", a different "reference", a classifier."""
    paths = word_level_llamas(tmp_path_factory, WORDS, {"policy": ("causal", 0), "reference": ("causal", 1),
                                                        "classifier": ("classifier", 2)})
    return {name: str(path) for name, path in paths.items()}


def text_batch(n: int = len(PROMPTS)) -> ScoringBatch:
    examples = [Example(str(i), p, "") for i, p in enumerate(PROMPTS[:n])]
    return ScoringBatch(PROMPTS[:n], RESPONSES[:n], examples)


def summed_response_logprob(model, prompt_ids: list[int], response_ids: list[int]) -> float:
    """Direct forward pass on one unpadded sequence: sum of log p(response token | everything before)."""
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    return sum(logprobs[t - 1, ids[0, t]].item() for t in range(len(prompt_ids), ids.shape[1]))


# ---- implicit DPO reward ---------------------------------------------------------------------------


def test_implicit_dpo_equals_beta_times_the_hand_computed_log_ratio(llamas):
    rm = ImplicitDPORM(llamas["policy"], llamas["reference"], beta=0.1, batch_size=3)
    scores = rm.score(text_batch())
    assert scores.shape == (4,) and scores.dtype == torch.float32
    tok = rm.tokenizer
    for i, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES, strict=True)):
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


# ---- token accounting ------------------------------------------------------------------------------


def test_hf_rms_count_non_pad_input_tokens(llamas):
    rm = LikelihoodRM(llamas["policy"], batch_size=3)
    assert rm.tokens_processed == 0
    rm.score(text_batch())
    expected = sum(len(rm.encode(p, r)[0]) for p, r in zip(PROMPTS, RESPONSES, strict=True))
    assert rm.tokens_processed == expected  # padding (two chunks of uneven lengths) is not counted
    dpo = ImplicitDPORM(llamas["policy"], llamas["reference"], batch_size=3)
    dpo.score(text_batch())
    assert dpo.tokens_processed == 2 * expected  # policy and reference each read every token
    classifier = ClassifierRM(llamas["classifier"], batch_size=3)
    classifier.score(text_batch())
    texts = [p + r for p, r in zip(PROMPTS, RESPONSES, strict=True)]
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


def test_a_checkpoint_from_before_token_and_fault_counters_still_loads():
    pool = RewardModelPool({"a": VerifierRM(), "b": VerifierRM()})
    old_counters = {"calls": 5.0, "batches": 1.0, "seconds": 0.5}  # no "tokens", no "faults"
    old = {"counters": {"a": old_counters, "b": old_counters}, "models": {}}
    pool.load_state_dict(old)
    assert pool.call_counts() == {"a": 5, "b": 5} and pool.token_counts() == {"a": 0, "b": 0}
    assert pool.counters()["a"]["faults"] == 0


# ---- placement ---------------------------------------------------------------------------------------


class PlacedRM(RewardModel):
    """Records every move and where it was when it scored."""

    def __init__(self, log: list[tuple[str, str]]) -> None:
        super().__init__()
        self.log, self.device = log, "cpu"

    def to(self, device):
        self.device = str(device)
        self.log.append((self.name, f"to {device}"))
        return self

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        self.log.append((self.name, f"score on {self.device}"))
        return torch.zeros(len(batch))


def placed_pool(placement: str) -> tuple[RewardModelPool, list[tuple[str, str]]]:
    log: list[tuple[str, str]] = []
    return RewardModelPool({k: PlacedRM(log) for k in "abcd"}, device="meta", placement=placement), log


def test_resident_placement_moves_each_rm_once_and_keeps_it():
    pool, log = placed_pool("resident")
    for arm in (0, 1, 0, 1):
        pool.score([arm], text_batch(2))
    assert log == [("a", "to meta"), ("a", "score on meta"), ("b", "to meta"), ("b", "score on meta"),
                   ("a", "score on meta"), ("b", "score on meta")]
    assert [pool[i].device for i in range(4)] == ["meta", "meta", "cpu", "cpu"]


def test_offload_placement_keeps_only_the_scoring_rm_on_the_device():
    pool, log = placed_pool("offload")
    pool.score([0], text_batch(2))
    pool.score([1, 2], text_batch(2))  # an ensemble call: one at a time
    assert log == [("a", "to meta"), ("a", "score on meta"), ("a", "to cpu"),
                   ("b", "to meta"), ("b", "score on meta"), ("b", "to cpu"),
                   ("c", "to meta"), ("c", "score on meta"), ("c", "to cpu")]
    assert [pool[i].device for i in range(4)] == ["cpu"] * 4


def test_offload_moves_an_rm_back_even_when_it_fails():
    pool, log = placed_pool("offload")
    pool[0].score = lambda batch: 1 / 0  # type: ignore[method-assign]
    with pytest.raises(Exception, match="ZeroDivisionError"):
        pool.score([0], text_batch(2))
    assert log == [("a", "to meta"), ("a", "to cpu")] and pool[0].device == "cpu"


def test_an_unknown_placement_lists_the_choices():
    with pytest.raises(LaserConfigError, match=r"'everywhere'.*\['resident', 'offload'\]"):
        RewardModelPool({"a": VerifierRM()}, placement="everywhere")


@pytest.mark.parametrize("name", ["tiny", "reasoning_7b"])
def test_pool_yamls_carry_placement_and_timeout_knobs(name):
    cfg = OmegaConf.load(CONF / "rm_pool" / f"{name}.yaml")
    assert cfg.placement == "resident" and cfg.timeout_s is None
    pool = instantiate(cfg)
    assert pool.placement == "resident" and pool.timeout_s is None
    offloaded = instantiate(OmegaConf.merge(cfg, {"placement": "offload", "timeout_s": 30}))
    assert offloaded.placement == "offload" and offloaded.timeout_s == 30.0
