"""Reward functions in TRL's signature, shipped as examples of the `TRLRewardFunction` arm.

Each takes `completions` (strings, or TRL's conversational messages) and dataset columns by name, takes
`**kwargs` for the rest (as TRL requires), and returns one float or None ("not applicable") per
completion. They import nothing from TRL: any function of this shape is an arm.
"""

from __future__ import annotations

import re
from typing import Any

_FIRST_ANSWER = re.compile(r"-?\d+|\b(?:yes|no)\b", re.IGNORECASE)


def completion_text(completion: Any) -> str:
    """A completion as text: itself, or the content of its last message (TRL's conversational form)."""
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


def answer_match(completions: list[Any], answer: list[str], **kwargs: Any) -> list[float | None]:
    """1.0 when a completion's first answer (an integer or a yes/no word) is the row's gold `answer`,
    0.0 when it is another or none; None for a row without a gold answer (not applicable)."""
    rewards: list[float | None] = []
    for completion, gold in zip(completions, answer, strict=True):
        if not gold:
            rewards.append(None)
            continue
        match = _FIRST_ANSWER.search(completion_text(completion))
        found = match.group(0).lower() if match else None
        if found is not None and found.lstrip("-").isdigit():
            found = str(int(found))  # "07" answers "7"
        rewards.append(float(found is not None and found == str(gold).lower()))
    return rewards
