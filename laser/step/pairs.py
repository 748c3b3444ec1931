"""Preference pairs from RM scores: per prompt, the top-scored response against lower-scored ones."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def build_preference_pairs(
    scores: torch.Tensor,
    max_pairs_per_prompt: int = 1,
    responses: Sequence[Sequence] | None = None,
    min_margin: float = 0.0,
) -> list[tuple[int, int, int]]:
    """Pairs (prompt, chosen, rejected) of response indices from a [num_prompts, n] score matrix.

    Per prompt: chosen is the highest-scored response (lowest index among equal tops, so the rule is
    deterministic); rejected are the responses scored strictly below it by more than `min_margin`,
    lowest score first (the clearest preferences), up to `max_pairs_per_prompt`. Ties with the top are
    skipped, pairs never mix prompts, and, when `responses` ([num_prompts][n] texts or token tuples) is
    given, a rejected response identical to the chosen one is skipped (DPO on identical sequences
    has zero gradient and would only dilute the batch). Non-finite scores are never paired.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be [num_prompts, n], got shape {tuple(scores.shape)}")
    if max_pairs_per_prompt < 1:
        raise ValueError(f"max_pairs_per_prompt must be >= 1, got {max_pairs_per_prompt}")
    pairs: list[tuple[int, int, int]] = []
    for prompt_index, row in enumerate(scores.tolist()):
        finite = [(s, i) for i, s in enumerate(row) if s == s and abs(s) != float("inf")]
        if len(finite) < 2:
            continue
        top_score = max(s for s, _ in finite)
        chosen = min(i for s, i in finite if s == top_score)
        lower = sorted((s, i) for s, i in finite if s < top_score - min_margin)
        taken = 0
        for _, rejected in lower:
            if responses is not None and responses[prompt_index][rejected] == responses[prompt_index][chosen]:
                continue
            pairs.append((prompt_index, chosen, rejected))
            taken += 1
            if taken == max_pairs_per_prompt:
                break
    return pairs


def mean_chosen_score(scores: dict[int, torch.Tensor], arms: Sequence[int],
                      pairs: Sequence[tuple[int, int, int]]) -> float | None:
    """The mean score the one chosen RM (`arms`; `scores` maps arms to [num_prompts, n]) gave the responses
    it preferred in `pairs` (each chosen response once); None for an ensemble or without pairs. The
    report's reward-hacking monitor plots it against the task metric."""
    chosen = sorted({(p, c) for p, c, _ in pairs})
    if len(arms) != 1 or not chosen:
        return None
    return sum(float(scores[arms[0]][p, c]) for p, c in chosen) / len(chosen)
