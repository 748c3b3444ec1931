"""The paper's reward: minus the training loss of the step (DPO + nll_weight * NLL), or its DPO term alone."""

from __future__ import annotations

from laser.config.checks import check_values
from laser.selection.normalisers.base import Normaliser
from laser.selection.selector_reward.base import SelectorReward, StepEvidence


class NegativeLoss(SelectorReward):
    """Minus the mean loss of the decision's trained pairs (LASeR, arXiv 2410.01735: "the negative training
    loss"). With the quantile normaliser this is the paper's reward exactly (`selector_reward=paper`).

    What it measures, seen in laser's counterfactual diagnostics: right after a reference refresh the DPO
    term is log 2 for every pair, so the reward is dominated by the NLL term, i.e. by how probable the
    chosen responses already are under the policy. That ranks a correct judge first while the policy is
    better than chance, and follows whatever the policy was trained on otherwise.

    Args:
        term: "total" (the trained objective, the paper) or "dpo" (the DPO term alone: `selector_reward=dpo`).
    """

    def __init__(self, normaliser: Normaliser, term: str = "total") -> None:
        super().__init__(normaliser)
        check_values("selector_reward", term=term)
        self.term = term
        self.name = "paper" if term == "total" else "dpo"

    def measure(self, evidence: StepEvidence) -> float | None:
        losses = evidence.pair_losses if self.term == "total" else evidence.dpo_losses
        return -float(losses.mean()) if evidence.num_pairs else None
