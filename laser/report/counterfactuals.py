"""What the bandit's reward sees, from the counterfactual diagnostics (`laser.counterfactuals=true`).

A run with counterfactuals writes, at every step, what each RM of the pool would have given on the same
samples had the bandit chosen it: the gold accuracy of its pairs and the selector reward it would have
earned (`counterfactuals.jsonl`, see `laser.step.counterfactuals`). The bandit only ever sees the reward
of the RM it chose; these functions ask whether that reward ranks the RMs the way gold accuracy does:

- `reward_vs_gold`: per task, selector reward and (majority) category, each RM's mean gold pair accuracy,
  mean normalised and raw reward; Kendall's tau-b between the reward's and gold's rankings of the RMs;
  and the per-step agreement rate (the reward's best RM is a gold-best RM).
- `counterfactual_regret`: per job, the cumulative regret in gold pair accuracy of the decisions taken.
  Every RM was measured at every step, so this is the true per-step regret against the best RM of that
  step, not an estimate like `laser.report.regret`'s pseudo-regret (which compares category means
  estimated from the sweep's own decisions).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from laser.report.jobs import Job, majority_category
from laser.report.stats import Summary, summarise

GOLD = "gold_pair_accuracy"
REWARDS = ("reward_normalised", "reward_raw")  # what the bandit learns from, and the value before normalising
_EPS = 1e-12  # values this close are tied (means of the same fractions may differ in the last bit)

Curves = dict[str, dict[str, list[list[float]]]]  # {task: {method: [cumulative regret per step, per job]}}


def _sign(difference: float) -> int:
    return 0 if abs(difference) <= _EPS else (1 if difference > 0 else -1)


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b between two rankings of the same items: (concordant - discordant) pairs over
    sqrt((pairs - ties in x) * (pairs - ties in y)). Tau-b, not tau-a, because RMs often tie (two
    verifiers with the same accuracy), and a tie is neither agreement nor disagreement. None when
    either ranking is all ties (or fewer than 2 items): there is no ranking to agree with."""
    if len(x) != len(y):
        raise ValueError(f"rankings of different lengths: {len(x)} and {len(y)}")
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            sx, sy = _sign(x[i] - x[j]), _sign(y[i] - y[j])
            ties_x += sx == 0
            ties_y += sy == 0
            concordant += sx * sy > 0
            discordant += sx * sy < 0
    pairs = len(x) * (len(x) - 1) // 2
    denominator = math.sqrt((pairs - ties_x) * (pairs - ties_y))
    return None if denominator == 0 else (concordant - discordant) / denominator


def top_set(values: dict[str, float]) -> set[str]:
    """The keys whose value ties for the highest."""
    best = max(values.values())
    return {k for k, v in values.items() if _sign(v - best) == 0}


def step_agreement(arms: dict[str, dict[str, Any]], key: str) -> float | None:
    """Whether the RM with the highest `key` reward at a step is also a gold-best RM: 1 or 0, or the
    fraction of the reward's tied-best RMs that are gold-best (the chance that a random tie-break
    agrees). None when the step says nothing: a value is missing (an RM had no pairs, or no gold), or
    gold ties at the top for every RM."""
    gold = {rm: a.get(GOLD) for rm, a in arms.items()}
    reward = {rm: a.get(key) for rm, a in arms.items()}
    if not arms or None in gold.values() or None in reward.values():
        return None
    best_gold = top_set(gold)
    if len(best_gold) == len(gold):
        return None
    best_reward = top_set(reward)
    return len(best_reward & best_gold) / len(best_reward)


def agreement_rate(lines: Iterable[dict[str, Any]], key: str) -> dict[str, Any]:
    """{"rate": mean step agreement (None if no step counts), "steps": steps that count}."""
    values = [v for line in lines if (v := step_agreement(line.get("arms") or {}, key)) is not None]
    return {"rate": statistics.fmean(values) if values else None, "steps": len(values)}


def arm_means(lines: Iterable[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """{RM: {gold_pair_accuracy, reward_normalised, reward_raw: mean over the steps that have it}};
    an RM with no pairs at a step has no reward there, so each mean has its own steps."""
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for line in lines:
        for rm, arm in (line.get("arms") or {}).items():
            per_rm = values[rm]  # an RM without any value still gets its row
            for key in (GOLD, *REWARDS):
                if arm.get(key) is not None:
                    per_rm[key].append(float(arm[key]))
    return {rm: {key: statistics.fmean(v[key]) if v[key] else None for key in (GOLD, *REWARDS)}
            for rm, v in values.items()}


def rank_agreement(means: dict[str, dict[str, float | None]], key: str) -> float | None:
    """Kendall's tau-b between the RMs' mean `key` reward and their mean gold accuracy (RMs missing
    either are left out)."""
    rms = [rm for rm, m in means.items() if m[GOLD] is not None and m[key] is not None]
    return kendall_tau_b([means[rm][key] for rm in rms], [means[rm][GOLD] for rm in rms])


def category_view(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """One (task, reward, category): steps, the RM means, the rank agreement and the agreement rate."""
    means = arm_means(lines)
    return {"steps": len(lines), "arms": means,
            "kendall_tau": {key: rank_agreement(means, key) for key in REWARDS},
            "agreement": {key: agreement_rate(lines, key) for key in REWARDS}}


def latest_per_step(lines: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per step, the last written (a resumed run may repeat the steps after its checkpoint)."""
    return [line for _, line in sorted({int(line["step"]): line for line in lines}.items())]


def reward_vs_gold(jobs: list[Job]) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """{task: {selector reward: {majority category: category_view}}} over all steps of all jobs
    (whatever their method: every RM is measured at every step, so the bandit's choices do not bias
    the means); empty when no job has counterfactuals."""
    grouped: dict[str, dict[str, dict[str, list]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for job in jobs:
        for line in latest_per_step(job.counterfactuals):
            category = majority_category(line.get("categories") or {})
            grouped[job.task][str(line.get("reward"))][category].append(line)
    return {task: {reward: {c: category_view(lines) for c, lines in sorted(by_category.items())}
                   for reward, by_category in sorted(by_reward.items())}
            for task, by_reward in sorted(grouped.items())}


# ---- regret ----------------------------------------------------------------------------------------


def step_regret(line: dict[str, Any]) -> float | None:
    """Best gold pair accuracy among the RMs at this step minus the chosen RM's. None (the step is
    skipped) for an ensemble decision or when the chosen RM has no gold accuracy; RMs without one (no
    pairs, so nothing to train on) cannot be the best."""
    chosen = line.get("chosen") or []
    gold = {rm: float(a[GOLD]) for rm, a in (line.get("arms") or {}).items() if a.get(GOLD) is not None}
    if len(chosen) != 1 or chosen[0] not in gold:
        return None
    return max(gold.values()) - gold[chosen[0]]


def cumulative_regret(lines: list[dict[str, Any]]) -> list[float]:
    """One job's cumulative regret in gold pair accuracy after each step (index = step); skipped or
    missing steps add nothing."""
    if not lines:
        return []
    per_step = [0.0] * (max(int(line["step"]) for line in lines) + 1)
    for line in latest_per_step(lines):
        per_step[int(line["step"])] = step_regret(line) or 0.0
    total, curve = 0.0, []
    for regret in per_step:
        total += regret
        curve.append(total)
    return curve


def regret_label(job: Job, several_rewards: bool) -> str:
    """A curve's method: the job's method, with its selector reward when the sweep compares rewards
    (the method label names the bandit only, so two rewards would otherwise share a line)."""
    reward = job.counterfactuals[0].get("reward") if job.counterfactuals else None
    named = reward is None or job.method.endswith(f"/{reward}")  # a +method row names its reward already
    return f"{job.method} ({reward})" if several_rewards and not named else job.method


def counterfactual_regret(jobs: list[Job]) -> Curves:
    """{task: {method: [one cumulative regret curve per job]}}, for the jobs with counterfactuals; a
    true per-step regret in gold pair accuracy (every RM measured at every step), not an estimate."""
    # jobs whose every decision took several RMs (ensembles) choose no RM, so they have no regret to show
    runs = [j for j in jobs if any(step_regret(line) is not None for line in j.counterfactuals)]
    several = len({line.get("reward") for j in runs for line in j.counterfactuals}) > 1
    curves: Curves = defaultdict(lambda: defaultdict(list))
    for job in runs:
        curves[job.task][regret_label(job, several)].append(cumulative_regret(job.counterfactuals))
    return {task: dict(sorted(by_method.items())) for task, by_method in sorted(curves.items())}


def regret_band(runs: list[list[float]]) -> tuple[list[float], list[float]]:
    """Mean and sample std (NaN for one job) per step over jobs, aligned by step up to the shortest."""
    steps = min(len(c) for c in runs)
    columns = [[c[i] for c in runs] for i in range(steps)]
    return ([statistics.fmean(v) for v in columns],
            [statistics.stdev(v) if len(v) > 1 else math.nan for v in columns])


def final_regret(curves: Curves) -> dict[str, dict[str, Summary]]:
    """{task: {method: cumulative regret at the last step all its jobs reached, over jobs}}."""
    return {task: {method: summarise(c[min(len(c) for c in runs) - 1] for c in runs)
                   for method, runs in by_method.items()}
            for task, by_method in curves.items()}
