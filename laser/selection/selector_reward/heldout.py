"""Generalisation to held-back pairs: did the update on the RM's pairs also move its other pairs its way?"""

from __future__ import annotations

from laser.config.checks import check_values
from laser.selection.normalisers.base import Normaliser
from laser.selection.selector_reward.base import SelectorReward, StepEvidence


class HeldOutAgreement(SelectorReward):
    """The fraction of held-back pairs (every `holdout_every`-th prompt's, scored by the same RM but not
    trained on) whose policy margin log pi(chosen) - log pi(rejected) grew with the update.

    Why: it asks whether the RM's preferences are learnable as a rule, not whether they match the policy.
    An RM whose rankings are noise cannot generalise from one prompt to another, so it scores 0.5 in
    expectation whatever the policy has learnt so far (no incumbent bias); an RM with consistent
    preferences scores above 0.5 while there is something left to learn. Costs: 1/holdout_every of the
    step's pairs are not trained on, and two no-grad forwards over the held-back pairs. Caveat: an RM with
    consistent but wrong preferences generalises too; and with few held-back pairs the fraction is noisy.
    """

    name = "heldout"

    def __init__(self, normaliser: Normaliser, holdout_every: int = 4) -> None:
        super().__init__(normaliser)
        check_values("selector_reward", holdout_every=holdout_every)
        self.holdout_every = holdout_every

    def measure(self, evidence: StepEvidence) -> float | None:
        if not len(evidence.heldout_prompts):
            return None
        return float((evidence.heldout_margins_after > evidence.heldout_margins_before).float().mean())
