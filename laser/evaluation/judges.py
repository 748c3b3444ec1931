"""Pairwise judges: which of two responses to the same prompt is better.

A judge answers `prefer(prompts, responses_a, responses_b)` with one number per item: 1.0 when
response a is better, 0.0 when b is, 0.5 for a tie. `laser.tasks.win_rate.win_rate` turns these into a
win rate (asking in both orders to cancel position bias). Three judges of the `Judge` interface:

- `RewardModelJudge`: any `RewardModel` scores both responses; the higher score wins.
- `PairwiseLMJudge`: a causal LM is asked "Which response is better? Answer A or B." and the
  next-token logits of A and B decide (the AlpacaEval recipe with an open model instead of GPT-4).
- `LengthJudge`: the longer response wins. No quality signal, but deterministic: for tests, and as
  the sanity baseline every win rate should be read against (judges are known to favour length).
"""

from __future__ import annotations

import torch

from laser.errors import LaserConfigError
from laser.hf import chat_text, resolve_model_path
from laser.rewards.base import RewardModel, ScoringBatch
from laser.rewards.hf_base import LazyHFModel
from laser.tasks.base import Example
from laser.tasks.win_rate import Judge


def _check_lengths(prompts: list[str], responses_a: list[str], responses_b: list[str]) -> None:
    if not len(prompts) == len(responses_a) == len(responses_b):
        raise ValueError(f"judge inputs differ in length: {len(prompts)} prompts, {len(responses_a)} "
                         f"responses a, {len(responses_b)} responses b")


def _verdict(difference: float, tie_margin: float) -> float:
    """1.0 / 0.0 / 0.5 from a score difference a - b."""
    if abs(difference) <= tie_margin:
        return 0.5
    return 1.0 if difference > 0 else 0.0


class LengthJudge(Judge):
    """The longer response (in characters, surrounding whitespace ignored) wins; equal lengths tie."""

    name = "length"

    def prefer(self, prompts: list[str], responses_a: list[str], responses_b: list[str]) -> list[float]:
        """1.0 when a is longer, 0.0 when b is, 0.5 when they are equally long."""
        _check_lengths(prompts, responses_a, responses_b)
        return [_verdict(len(a.strip()) - len(b.strip()), 0) for a, b in zip(responses_a, responses_b, strict=True)]


class RewardModelJudge(Judge):
    """Scores both responses with a `RewardModel` (one call for all 2n responses); higher wins.

    Args:
        rm: any RewardModel (e.g. `ClassifierRM` around Skywork-Reward). Programmatic RMs that need
            gold answers (the verifier) do not fit: the judge has only prompts and responses.
        tie_margin: a score difference of at most this much is a tie (0: only equal scores tie).
        device: where the RM runs (None: where it is configured to run).
    """

    name = "rm"

    def __init__(self, rm: RewardModel, tie_margin: float = 0.0, device: str | None = None) -> None:
        if not isinstance(rm, RewardModel):
            raise LaserConfigError(f"RewardModelJudge needs a RewardModel (a `_target_`), got {type(rm).__name__}")
        if tie_margin < 0:
            raise LaserConfigError(f"judge.tie_margin={tie_margin} must be >= 0")
        rm.check()  # a missing local folder fails now, not at the first evaluation
        self.rm = rm.to(device) if device else rm
        self.tie_margin = float(tie_margin)

    def describe(self) -> str:
        """`rm:<the RM's model>` (its name or class when it has no model)."""
        model = getattr(self.rm, "model_name_or_path", None) or self.rm.name or type(self.rm).__name__
        return f"rm:{model}" + (f" (tie margin {self.tie_margin:g})" if self.tie_margin else "")

    def prefer(self, prompts: list[str], responses_a: list[str], responses_b: list[str]) -> list[float]:
        """1.0 where score(a) - score(b) > tie_margin, 0.0 where it is < -tie_margin, else 0.5."""
        _check_lengths(prompts, responses_a, responses_b)
        n = len(prompts)
        if n == 0:
            return []
        # Placeholder examples: ScoringBatch carries them for RMs that grade; these RMs only read text.
        examples = [Example(uid=f"judge-{i}", question=p, answer="") for i, p in enumerate(prompts)]
        scores = self.rm.score(ScoringBatch(list(prompts) * 2, list(responses_a) + list(responses_b), examples * 2))
        if scores.shape != (2 * n,) or not torch.isfinite(scores).all():
            raise ValueError(f"RM judge {self.rm.name or type(self.rm).__name__} returned {tuple(scores.shape)} "
                             f"scores (finite: {bool(torch.isfinite(scores).all())}) for {2 * n} responses")
        return [_verdict(float(scores[i] - scores[n + i]), self.tie_margin) for i in range(n)]


class PairwiseLMJudge(LazyHFModel, Judge):
    """A causal LM as a pairwise judge: the next-token logits of "A" vs "B" after `template`.

    Nothing loads until the first `prefer` call (hub id or local folder). Each response is cut to
    an equal share of `max_length` tokens, so the question at the end of the template always fits.

    Args:
        model_name_or_path: hub id (e.g. meta-llama/Meta-Llama-3-8B-Instruct) or local folder.
        batch_size: comparisons per forward pass; higher is faster and uses more memory.
        max_length: tokens per judge prompt (instruction + both responses + template).
        device, dtype: where and in which precision the judge runs.
        trust_remote_code: allow the checkpoint's own model code.
        use_chat_template: wrap the judge prompt as a user turn when the tokenizer has a chat
            template (instruction-tuned judges expect it); the choices are then "A"/"B", else " A"/" B".
        tie_margin: a logit difference of at most this much is a tie.
        template: overrides the class attribute; placeholders {instruction}, {response_a}, {response_b}.
    """

    name = "pairwise_lm"
    auto_class = "AutoModelForCausalLM"
    template: str = (
        "You are a careful judge of AI assistants. Compare the two responses to the instruction below "
        "for helpfulness, correctness and how well they follow the instruction.\n\n"
        "### Instruction:\n{instruction}\n\n### Response A:\n{response_a}\n\n### Response B:\n{response_b}\n\n"
        "Which response is better? Answer A or B.\nAnswer:"
    )

    def __init__(self, model_name_or_path: str, tokenizer_name_or_path: str | None = None, batch_size: int = 4,
                 max_length: int = 2048, device: str = "cpu", dtype: str = "float32",
                 trust_remote_code: bool = False, use_chat_template: bool = True, tie_margin: float = 0.0,
                 template: str | None = None) -> None:
        super().__init__(model_name_or_path, tokenizer_name_or_path, batch_size, max_length, device, dtype,
                         trust_remote_code, use_chat_template)  # a dtype typo fails here
        resolve_model_path(self.model_name_or_path)  # a missing local folder fails now
        if template is not None:
            missing = [k for k in ("{instruction}", "{response_a}", "{response_b}") if k not in template]
            if missing:
                raise LaserConfigError(f"judge.template lacks the placeholder(s) {missing}")
            self.template = template
        if max_length < 64:
            raise LaserConfigError(f"judge.max_length={max_length} is too small for a pairwise prompt (>= 64)")
        self.tie_margin = float(tie_margin)
        self._suffix_ids: list[int] = []
        self._choice_ids: tuple[int, int] = (0, 0)

    def describe(self) -> str:
        """`lm:<the judge model>`."""
        return f"lm:{self.model_name_or_path}" + (f" (tie margin {self.tie_margin:g})" if self.tie_margin else "")

    def load(self) -> None:
        """Load tokenizer and model now (otherwise the first `prefer` call does), and find the choice tokens."""
        if self.model is not None:
            return
        super().load()
        choice_a, choice_b = ("A", "B") if self.chat_formatted else (" A", " B")
        ids_a = self.tokenizer(choice_a, add_special_tokens=False)["input_ids"]
        ids_b = self.tokenizer(choice_b, add_special_tokens=False)["input_ids"]
        # " A" may be two tokens (a space, then "A"); the shared prefix is fed as input and the first
        # token where the two choices differ is compared.
        shared = 0
        while shared < min(len(ids_a), len(ids_b)) and ids_a[shared] == ids_b[shared]:
            shared += 1
        if shared == min(len(ids_a), len(ids_b)):
            raise LaserConfigError(f"judge tokenizer {self.tokenizer_name_or_path!r} cannot tell {choice_a!r} "
                                   f"from {choice_b!r} by one token")
        self._suffix_ids = ids_a[:shared]
        self._choice_ids = (ids_a[shared], ids_b[shared])

    def _truncate(self, text: str, tokens: int) -> str:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return text if len(ids) <= tokens else self.tokenizer.decode(ids[:tokens]) + " [...]"

    def judge_prompts(self, prompts: list[str], responses_a: list[str], responses_b: list[str]) -> list[str]:
        """The judge's input text per item (after loading; responses cut to fit `max_length`)."""
        self.load()
        overhead = len(self.tokenizer(self.template, add_special_tokens=False)["input_ids"]) + 32
        if overhead > self.max_length // 2:
            raise LaserConfigError(f"judge.max_length={self.max_length} leaves too little room for the responses: "
                                   f"the template alone is ~{overhead} tokens")
        texts = []
        for prompt, a, b in zip(prompts, responses_a, responses_b, strict=True):
            instruction = self._truncate(prompt, self.max_length // 4)
            used = overhead + len(self.tokenizer(instruction, add_special_tokens=False)["input_ids"])
            share = max(8, (self.max_length - used) // 2)
            text = (self.template.replace("{instruction}", instruction)
                    .replace("{response_a}", self._truncate(a, share)).replace("{response_b}", self._truncate(b, share)))
            texts.append(chat_text(self.tokenizer, text, None, self.use_chat_template) or text)
        return texts

    @torch.no_grad()
    def prefer(self, prompts: list[str], responses_a: list[str], responses_b: list[str]) -> list[float]:
        """1.0 where logit(A) - logit(B) > tie_margin, 0.0 where < -tie_margin, else 0.5."""
        _check_lengths(prompts, responses_a, responses_b)
        texts = self.judge_prompts(prompts, responses_a, responses_b)
        add_special = not self.chat_formatted
        verdicts: list[float] = []
        for chunk in self.batches(texts):
            rows = [self.tokenizer(t, add_special_tokens=add_special)["input_ids"][-(self.max_length - 4):]
                    + self._suffix_ids for t in chunk]
            # Right padding: every row keeps positions 0..len-1, so a verdict does not depend on
            # which other items share its batch.
            width = max(len(r) for r in rows)
            pad = self.tokenizer.pad_token_id
            input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.model.device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.model.device)
            logits = self.model(input_ids=input_ids, attention_mask=mask).logits
            last = logits[torch.arange(len(rows), device=logits.device), mask.sum(dim=1) - 1].float()
            differences = last[:, self._choice_ids[0]] - last[:, self._choice_ids[1]]
            verdicts += [_verdict(float(d), self.tie_margin) for d in differences.cpu()]
        return verdicts
