"""One judge per task category plus pure noise: a fair RM pool for any mix of categories.

`rm_pool=tiny` is written for the default mix (addition, comparison). `category_judges` builds the
same kind of pool for whatever `task.categories` is: for each category c an RM `<c>_judge`, the exact
verifier corrupted (NoisyRM) with probability `reliable_corrupt_prob` on c and always on every other
category, and an RM `noise` corrupted always. Every category then has exactly one RM that can teach
it, so on any mix a bandit has to route each category's prompts to its own judge.

With `off_category="own_rule"` (conf/rm_pool/category_judges_conflicting.yaml) a judge does not turn into
noise outside its category: it applies its own rule there (`RuleVerifierRM`), so judges *conflict* (the
maximum judge prefers the larger number on a "which is smaller" question), as RMs built for different
things do. Noise averages out in a score ensemble; conflicting preferences do not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from laser.errors import LaserConfigError
from laser.rewards.base import RewardModel
from laser.rewards.noisy import NoisyRM
from laser.rewards.pool import RewardModelPool
from laser.rewards.rule_verifier import RuleVerifierRM
from laser.rewards.verifier import VerifierRM

NOISE = "noise"  # the arm that is pure noise on every category


def judge_name(category: str) -> str:
    """The name of the RM reliable on `category` (`judge` for a task without categories: reliable on all)."""
    return f"{category}_judge" if category else "judge"


def arm_seed(seed: int, name: str) -> int:
    """The noise seed of arm `name`: derived from the pool's `seed` and the arm's name, so it differs
    between arms and a judge draws the same stream whichever other categories the pool has."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest()[:4], "big")


def category_judges(
    categories: Sequence[str],
    reliable_corrupt_prob: float = 0.05,
    seed: int = 0,
    models: Mapping[str, RewardModel | None] | None = None,
    device: str = "cpu",
    placement: str = "resident",
    timeout_s: float | None = None,
    off_category: str = "noise",
    noise_arms: int = 1,
) -> RewardModelPool:
    """The pool `<c>_judge` for each category c (in order), then `noise`: K = len(categories) + 1.

    Args:
        categories: the task's categories (`task.categories` in conf/rm_pool/category_judges.yaml); none (a
            task such as GSM8K): one `judge`, the verifier corrupted at `reliable_corrupt_prob`, plus noise.
        reliable_corrupt_prob: how often a judge's score is replaced by Uniform(0, 1) noise on its own
            category (0: the exact verifier there); on every other category it always is.
        seed: each arm's noise seed is derived from it and the arm's name (`arm_seed`).
        models: more RMs, appended after `noise` (how `bandit=oracle` adds its verifier arm).
        device, placement, timeout_s: as for `RewardModelPool`.
        off_category: what a judge does on the other categories: "noise" (its scores are Uniform(0, 1)) or
            "own_rule" (it applies its own category's rule, corrupted at `reliable_corrupt_prob` too).
        noise_arms: how many pure-noise arms (`noise`, `noise_2`, ...): more of them, harder to avoid.
    """
    categories = [str(c) for c in categories or [""]]  # Hydra passes a ListConfig; a task without categories: [""]
    if len(set(categories)) != len(categories) or ("" in categories and len(categories) > 1):
        raise LaserConfigError(f"rm_pool=category_judges needs distinct, non-empty task categories; got {categories!r}")
    if off_category not in ("noise", "own_rule"):
        raise LaserConfigError(f"rm_pool.off_category={off_category!r}; choose 'noise' or 'own_rule'")
    arms: dict[str, RewardModel | None] = {
        judge_name(c): NoisyRM(VerifierRM(), corrupt_prob={"default": 1.0, c: reliable_corrupt_prob},
                               seed=arm_seed(seed, judge_name(c))) if off_category == "noise" else
        NoisyRM(RuleVerifierRM(c), corrupt_prob=reliable_corrupt_prob, seed=arm_seed(seed, judge_name(c)))
        for c in categories
    }
    if not isinstance(noise_arms, int) or noise_arms < 0:
        raise LaserConfigError(f"rm_pool.noise_arms={noise_arms!r} must be an integer >= 0")
    for index in range(noise_arms):
        name = NOISE if index == 0 else f"{NOISE}_{index + 1}"
        arms[name] = NoisyRM(VerifierRM(), corrupt_prob=1.0, seed=arm_seed(seed, name))
    clashes = sorted(set(arms) & set(models or {}))
    if clashes:
        raise LaserConfigError(f"rm_pool.models names {clashes}, which category_judges already builds")
    return RewardModelPool({**arms, **(models or {})}, device=device, placement=placement, timeout_s=timeout_s)
