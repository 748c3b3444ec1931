"""Agreement with the policy: how often the policy's own likelihood ranks a pair the way the chosen RM did."""

from __future__ import annotations

from laser.selection.rewards.base import SelectorReward, StepEvidence


class PolicyAgreement(SelectorReward):
    """The fraction of the decision's trained pairs whose chosen response has a higher per-token log-prob
    under the policy (before the update) than the rejected one.

    Why: the paper's reward (minus the loss) carries the same information through its NLL term, but on a
    scale that depends on the category (answer length, entropy) and drifts as training sharpens the policy,
    which a global quantile normaliser turns into "which category was this batch". A fraction is scale-free:
    an RM whose rankings are noise scores ~0.5 in every category at any point of training (a bit more where
    the policy's samples repeat one answer), one that ranks correct answers first scores more wherever the
    policy is better than chance. It costs nothing: the step computes these log-probs for its loss.
    Caveat, stated plainly: it rewards RMs that agree with the current policy, so a policy trained into a
    wrong habit makes a correct RM look worse (see docs/bandit_reward.md). The yaml normalises it
    by quantiles, like the paper's reward, so LinUCB's alpha means the same for both.
    """

    name = "agreement"

    def measure(self, evidence: StepEvidence) -> float | None:
        if not evidence.num_pairs:
            return None
        chosen = evidence.chosen_logps / evidence.chosen_lengths.clamp(min=1)
        rejected = evidence.rejected_logps / evidence.rejected_lengths.clamp(min=1)
        return float((chosen > rejected).float().mean())
