"""The agreement-ensemble baseline: a score ensemble that trains only on pairs most RMs agree with.

Scores are combined as in `ScoreEnsemble` (per-RM z-scores, averaged); then a (prompt, chosen,
rejected) pair is kept only when more than `min_agreement` of the RMs score chosen above rejected.
With the default 0.5 that is a strict majority: 2 of 3 RMs, both of 2. A tie counts as disagreement.
Cost: K RM forward passes per response, like the score ensemble, and fewer pairs per step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from laser.errors import LaserConfigError
from laser.selection.score_ensemble import ScoreEnsemble


def pair_agreement(scores: Mapping[int, torch.Tensor],
                   pairs: Sequence[tuple[int, int, int]]) -> dict[int, torch.Tensor]:
    """arm -> bool tensor [len(pairs)]: whether that RM scores the pair's chosen response strictly above
    its rejected one (a tie or a NaN, an arm that did not score that prompt, is not agreement). Scores are
    [num_prompts, n] per arm; pairs are (prompt, chosen, rejected) indices."""
    index = torch.tensor([list(pair) for pair in pairs], dtype=torch.long).reshape(-1, 3)
    out = {}
    for arm, s in scores.items():
        if s.ndim != 2:
            raise ValueError(f"arm {arm}: scores must be [num_prompts, n] to index pairs, got shape {tuple(s.shape)}")
        out[arm] = s[index[:, 0], index[:, 1]] > s[index[:, 0], index[:, 2]]
    return out


class AgreementEnsemble(ScoreEnsemble):
    """All RMs score every batch; their z-scored scores are averaged (`ScoreEnsemble.combine`), and a
    pair survives `filter_pairs` only when the fraction of RMs preferring its chosen response is
    strictly greater than `min_agreement` (default 0.5: a strict majority)."""

    def __init__(self, num_arms: int, arm_names: list[str] | None = None, min_agreement: float = 0.5,
                 granularity: str = "batch") -> None:
        super().__init__(num_arms, arm_names, granularity)
        if not 0.0 <= min_agreement < 1.0:
            raise LaserConfigError(f"min_agreement must be in [0, 1) (keep pairs when more than this fraction "
                                   f"of RMs agree), got {min_agreement}")
        self.min_agreement = float(min_agreement)
        self.kept, self.seen = 0, 0  # pairs, for the kept fraction in diagnostics

    def filter_pairs(self, pairs: list[tuple[int, int, int]],
                     scores: dict[int, torch.Tensor]) -> list[tuple[int, int, int]]:
        """The pairs on which more than `min_agreement` of the RMs in `scores` prefer chosen to rejected."""
        if not pairs:
            return []
        if not scores:
            raise ValueError("AgreementEnsemble.filter_pairs needs the RMs' scores, got none")
        votes = torch.stack(list(pair_agreement(scores, pairs).values())).sum(0).tolist()
        # Integer count / K in float64 rounds like the yaml's fraction does, so 3/5 vs 0.6 is an exact tie.
        kept = [pair for pair, count in zip(pairs, votes, strict=True) if count / len(scores) > self.min_agreement]
        self.kept += len(kept)
        self.seen += len(pairs)
        return kept

    def diagnostics(self) -> dict[str, float]:
        """The fraction of pairs kept so far (no per-arm figures: every arm always scores)."""
        return {"pairs_kept_fraction": self.kept / self.seen} if self.seen else {}

    def state_dict(self) -> dict[str, int]:
        """The kept/seen pair counters."""
        return {"kept": self.kept, "seen": self.seen}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore the counters from `state_dict()`."""
        self.kept, self.seen = int(state["kept"]), int(state["seen"])
