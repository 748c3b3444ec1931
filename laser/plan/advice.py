"""Which knob makes a plan fit: for each phase over the budget, the knobs that bring it under, each with
the largest value that fits (found by re-tracing that phase only).

Offloading resident RMs comes first (it keeps every setting; the other rows are then planned
offloaded), then the micro-batch and activation checkpointing (same training, more time), then the
knobs that change what is trained (prompts or samples per step, tokens).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from laser.plan.planner import MemoryPlan, Row, rows_for, trace_policy, trace_rm, with_shape
from laser.plan.table import gib
from laser.plan.trace import phase_peak

Advice = list[tuple[str, list[str]]]  # (phase, knobs that make it fit; empty: none does)


def largest_fitting(cost: Callable[[int], int], low: int, high: int, limit: int) -> int | None:
    """The largest x in [low, high] with cost(x) <= limit, for a non-decreasing cost; None if even
    `low` costs more. Guesses by linear interpolation (memory is near linear in a batch or a length:
    two or three probes), alternating with bisection so a curved cost still converges."""
    known: dict[int, int] = {}

    def at(x: int) -> int:
        if x not in known:
            known[x] = cost(x)
        return known[x]

    if at(low) > limit:
        return None
    if at(high) <= limit:
        return high
    interpolate = True
    while high - low > 1:  # at(low) <= limit < at(high)
        if interpolate:
            guess = low + int((limit - at(low)) * (high - low) / (at(high) - at(low)))
        else:
            guess = (low + high) // 2
        middle = min(max(guess, low + 1), high - 1)
        low, high = (middle, high) if at(middle) <= limit else (low, middle)
        interpolate = not interpolate
    return low


def advise(plan: MemoryPlan, first_only: bool = False) -> Advice:
    """The knobs (`key=value`, best first) that make each row over the budget fit; with `first_only`,
    only the first knob of the first such row (after offloading resident RMs, if that helps)."""
    advice: Advice = []
    if plan.placement == "resident" and plan.rm_figures and plan.failing():
        offloaded = dataclasses.replace(plan, placement="offload",
                                        rows=rows_for(plan.inputs, plan.figures, plan.rm_figures, "offload"))
        if offloaded.worst.peak < plan.worst.peak:
            freed = plan.rows[0].peak - offloaded.rows[0].peak
            advice.append(("RMs", [f"rm_pool.placement=offload (frees {gib(freed)} GiB in every phase but the "
                                   "RMs' own; what follows assumes it)"]))
            plan = offloaded
    for row in plan.failing():
        search = SEARCHES.get(row.phase, _rm if row.phase.startswith("RM ") else _none)
        advice.append((row.phase, search(plan, row, first_only)))
        if first_only:
            break
    return advice


def _none(plan: MemoryPlan, row: Row, first_only: bool) -> list[str]:
    return []


def _update(plan: MemoryPlan, row: Row, first_only: bool) -> list[str]:
    """The largest micro-batch that fits (with activation checkpointing if it is needed and off)."""
    inputs, limit, base = plan.inputs, plan.inputs.usable, row.peak - row.own
    specs = [(inputs.policy, "")]
    if not inputs.policy.checkpointing:
        specs.append((dataclasses.replace(inputs.policy, checkpointing=True), "policy.activation_checkpointing=true "))
    for spec, prefix in specs:
        def cost(micro: int, spec=spec) -> int:
            figures = trace_policy(with_shape(inputs, micro_batch=micro), phases=("update",), spec=spec)
            return base + phase_peak(figures, "update")
        best = largest_fitting(cost, 1, inputs.shape.update_sequences, limit)
        if best is not None:
            return [f"{prefix}{inputs.micro_batch_key}={best} ({gib(cost(best))} GiB)"]
    return []


def _sequences(plan: MemoryPlan, row: Row, first_only: bool) -> list[str]:
    """Generation, evaluation, the context pass: their memory is set by how many sequences run at once
    (prompts x samples) and how long they are."""
    inputs, shape, limit, base = plan.inputs, plan.inputs.shape, plan.inputs.usable, row.peak - row.own

    def cost(**changes) -> int:
        return base + phase_peak(trace_policy(with_shape(inputs, **changes), phases=(row.phase,)), row.phase)

    knobs: list[str] = []
    if row.phase == "evaluation":
        best = largest_fitting(lambda count: cost(eval_prompts=count), 1, shape.eval_prompts, limit)
        knobs += [f"data.eval_batch_size={best}"] if best else []
    else:  # generation's memory depends on prompts x samples only: one search gives both knobs
        samples = shape.samples if row.phase == "generation" else 1
        count = largest_fitting(lambda c: cost(prompts=c, samples=1, prompts_per_generate=None), 1,
                                shape.prompts * samples, limit)
        if count and count >= samples and row.phase == "generation":  # the paper's step, in more calls
            knobs.append(f"policy.prompts_per_generate={count // samples}")
        if count and count >= samples:
            knobs.append(f"data.batch_size={count // samples}")
        if count and row.phase == "generation" and count // shape.prompts >= 2:
            knobs.append(f"laser.num_samples={count // shape.prompts}")
    if first_only and knobs:
        return knobs
    tokens = largest_fitting(lambda t: cost(new_tokens=t), 1, shape.new_tokens, limit)
    knobs += [f"policy.max_new_tokens={tokens}"] if tokens and row.phase != "context" else []
    prompt = largest_fitting(lambda p: cost(prompt_tokens=p), 1, shape.prompt_tokens, limit)
    knobs += [f"policy.max_prompt_tokens={prompt} (or plan.prompt_tokens={prompt}, if no prompt is longer)"] \
        if prompt else []
    return knobs


def _rm(plan: MemoryPlan, row: Row, first_only: bool) -> list[str]:
    """An RM: fewer items per forward, or fewer tokens per item."""
    name = row.phase[len("RM "):]
    rm = next(r for r in plan.inputs.rms if r.name == name)
    limit, base = plan.inputs.usable, row.peak - plan.rm_figures[name]["scoring"]

    def cost(batch_size: int, max_length: int | None = None) -> int:
        return base + trace_rm(rm, batch_size, max_length)["scoring"]

    best = largest_fitting(cost, 1, rm.batch_size, limit)
    if best is not None:
        return [f"rm_pool.models.{name}.batch_size={best}"]
    length = largest_fitting(lambda n: cost(1, n), 16, rm.max_length, limit)
    return [f"rm_pool.models.{name}.batch_size=1 rm_pool.models.{name}.max_length={length}"] if length else []


SEARCHES = {"update": _update, "generation": _sequences, "evaluation": _sequences, "context": _sequences}
