"""An RM made deliberately unreliable, per category: how the tiny task gets RMs of uneven quality."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from laser.errors import LaserConfigError
from laser.rewards.base import RewardModel, ScoringBatch


class NoisyRM(RewardModel):
    """Wraps any RM and corrupts its scores, so that RM quality can differ by example category.

    This is how the embedded `arithmetic` task gets a pool whose best RM depends on the prompt:
    wrap one `VerifierRM` several times with different `corrupt_prob` per category (reliable on
    `addition`, pure noise on `comparison`, and the reverse). A bandit that learns which RM to use
    for which context then has something real to learn, in seconds, on a CPU.

    Each score is, independently with probability `corrupt_prob` (of the example's category),
    replaced by a fresh Uniform(0, 1) draw, which carries no information about the response;
    then Gaussian noise of standard deviation `noise_std` is added to every score.

    Args:
        base: the RM whose scores are corrupted.
        corrupt_prob: one probability for all examples, or a mapping category -> probability;
            categories missing from the mapping use its "default" key, or 0.0 without one.
        noise_std: standard deviation of the additive Gaussian noise (0 adds none).
        seed: seeds the wrapper's own generator; `state_dict` carries its state across resumes.

    The base RM only scores the items that were not corrupted, so pure noise (`corrupt_prob=1`)
    never runs the base at all; the pool still counts the call against this wrapper.
    """

    def __init__(
        self,
        base: RewardModel,
        corrupt_prob: float | Mapping[str, float] = 0.0,
        noise_std: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.base = base
        if isinstance(corrupt_prob, Mapping):  # a plain dict, or an OmegaConf DictConfig from Hydra
            self.corrupt_prob: float | dict[str, float] = {
                str(key): _check_prob(f"corrupt_prob[{key!r}]", value) for key, value in corrupt_prob.items()
            }
        else:
            self.corrupt_prob = _check_prob("corrupt_prob", corrupt_prob)
        if not (isinstance(noise_std, int | float) and math.isfinite(noise_std) and noise_std >= 0.0):
            raise LaserConfigError(f"NoisyRM noise_std={noise_std} must be a finite number >= 0")
        self.noise_std = float(noise_std)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def check(self) -> None:
        """The base RM's check."""
        self.base.check()

    @property
    def tokens_processed(self) -> int:  # type: ignore[override]
        """The base RM's tokens: the noise itself costs no model forward."""
        return self.base.tokens_processed

    @property
    def text_only(self) -> bool:  # type: ignore[override]
        """Per-category corruption reads each example's category, which a remote request lacks."""
        return self.base.text_only and not isinstance(self.corrupt_prob, dict)

    def prob_for(self, category: str) -> float:
        """The corruption probability applied to examples of `category`."""
        if isinstance(self.corrupt_prob, dict):
            return self.corrupt_prob.get(category, self.corrupt_prob.get("default", 0.0))
        return self.corrupt_prob

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        """The base scores with corruption and noise applied; the base sees only uncorrupted items."""
        n = len(batch)
        probs = torch.tensor([self.prob_for(e.category) for e in batch.examples], dtype=torch.float32)
        # Draw the same number of values every call, whatever the outcome, so that the stream (and
        # thus a resumed run) depends only on the batch sizes seen so far.
        corrupted = torch.rand(n, generator=self.generator) < probs
        scores = torch.rand(n, generator=self.generator)
        keep = (~corrupted).nonzero().flatten().tolist()
        if keep:
            base_scores = self.base.score(_subset(batch, keep))
            if not (isinstance(base_scores, torch.Tensor) and base_scores.shape == (len(keep),)):
                shape = (
                    tuple(base_scores.shape) if isinstance(base_scores, torch.Tensor) else type(base_scores)
                )
                raise ValueError(
                    f"NoisyRM {self.name!r}: base RM returned {shape}, expected shape ({len(keep)},)"
                )
            scores[keep] = base_scores.detach().to("cpu", torch.float32)
        if self.noise_std > 0.0:
            scores = scores + self.noise_std * torch.randn(n, generator=self.generator)
        return scores

    def to(self, device: str | torch.device) -> NoisyRM:
        """Move the base RM; the noise itself is drawn on the CPU."""
        self.base.to(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        """The generator state (and the base RM's state, when it has one)."""
        state: dict[str, Any] = {"generator": self.generator.get_state()}
        if hasattr(self.base, "state_dict"):
            state["base"] = self.base.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the random stream exactly where `state_dict` left it."""
        self.generator.set_state(state["generator"])
        if "base" in state and hasattr(self.base, "load_state_dict"):
            self.base.load_state_dict(state["base"])


def _check_prob(label: str, value: Any) -> float:
    try:
        prob = float(value)
    except (TypeError, ValueError):
        prob = math.nan
    if not 0.0 <= prob <= 1.0:  # also rejects NaN and non-numbers
        raise LaserConfigError(f"NoisyRM {label}={value} must be a probability in [0, 1]")
    return prob


def _subset(batch: ScoringBatch, indices: list[int]) -> ScoringBatch:
    if len(indices) == len(batch):
        return batch
    return ScoringBatch(
        prompts=[batch.prompts[i] for i in indices],
        responses=[batch.responses[i] for i in indices],
        examples=[batch.examples[i] for i in indices],
        task=batch.task,
    )
