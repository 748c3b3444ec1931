"""The memory plan: each phase's peak device memory at the config's shapes, and whether it fits.

Every phase's peak is the policy's state (weights + LoRA + AdamW, always on the device) plus what
else sits on the device then (RMs kept resident, a vLLM engine) plus the phase's own peak, traced
(`laser.plan.phases`). `rm_pool.placement=auto` becomes `resident` when every row fits with all RMs
resident, else `offload` (only the scoring RM on the device).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from laser.plan.inputs import GIB, PlanInputs, PlannedRM
from laser.plan.phases import POLICY_PHASES, StepShape, policy_trace, rm_trace
from laser.plan.trace import ModelSpec, at_depth, phase_peak


@dataclass
class Row:
    """One phase: its shapes, its own bytes (above the policy state; an RM: weights + scoring) and the
    device's bytes at its peak."""

    phase: str
    shapes: str
    own: int
    peak: int


@dataclass
class MemoryPlan:
    """The rows of one config's plan, the placement it assumed, and the budget they must fit."""

    inputs: PlanInputs
    rows: list[Row]
    placement: str
    figures: dict[str, int]  # the policy trace (weights, state, phase sections)
    rm_figures: dict[str, dict[str, int]]
    notes: list[str] = field(default_factory=list)

    @property
    def worst(self) -> Row:
        return max(self.rows, key=lambda row: row.peak)

    @property
    def fits(self) -> bool:
        return self.worst.peak <= self.inputs.usable

    def failing(self) -> list[Row]:
        return [row for row in self.rows if row.peak > self.inputs.usable]


# Each (model, shapes, phases, context kind) is traced once per process: the advice's searches and
# rm_pool.placement=auto plan the same policy shapes again (a trace is ~0.3-1 s of CPU; an entry is a few ints).
_POLICY_TRACES: dict[tuple, dict[str, int]] = {}


def trace_policy(inputs: PlanInputs, shape: StepShape | None = None, phases: tuple[str, ...] = POLICY_PHASES,
                 spec: ModelSpec | None = None, exact: bool = False) -> dict[str, int]:
    """The policy's figures (weights, state, each phase's sections) at its real depth."""
    spec, shape = spec or inputs.policy, shape or inputs.shape
    context = type(inputs.context).__name__ if inputs.context is not None else None  # its class sets its pass
    key = (repr(spec), repr(shape), tuple(phases), context, exact)  # reprs: the config's fields, every size
    if key not in _POLICY_TRACES:
        _POLICY_TRACES[key] = at_depth(policy_trace(spec, shape, phases, inputs.context), spec.layers, exact)
    return dict(_POLICY_TRACES[key])


def trace_rm(rm: PlannedRM, batch_size: int | None = None, max_length: int | None = None,
             exact: bool = False) -> dict[str, int]:
    """An RM's weights and scoring peak at its real depth."""
    trace = rm_trace(rm.spec, rm.rm, batch_size or rm.batch_size, max_length or rm.max_length)
    return at_depth(trace, rm.spec.layers, exact)


def plan_memory(inputs: PlanInputs, exact: bool = False) -> MemoryPlan:
    """Trace every phase and lay the rows out (resolving `placement=auto`)."""
    figures = trace_policy(inputs, exact=exact)
    rm_figures = {rm.name: trace_rm(rm, exact=exact) for rm in inputs.rms} if inputs.rms_on_device else {}
    notes = []
    placement = inputs.placement
    if placement == "auto":
        resident = rows_for(inputs, figures, rm_figures, "resident")
        worst = max(resident, key=lambda row: row.peak)
        placement = "resident" if worst.peak <= inputs.usable else "offload"
        if placement == "offload":
            notes.append(f"rm_pool.placement=auto -> offload: with every RM resident, {worst.phase} would need "
                         f"{worst.peak / GIB:.1f} GiB")
        else:
            notes.append("rm_pool.placement=auto -> resident: every RM fits beside the policy")
    if inputs.rms and not inputs.rms_on_device:
        notes.append("the RMs run on the CPU (rm_pool.device=cpu): not on the device")
    plan = MemoryPlan(inputs, rows_for(inputs, figures, rm_figures, placement), placement, figures, rm_figures, notes)
    plan.notes += vllm_notes(plan)
    return plan


def rows_for(inputs: PlanInputs, figures: dict[str, int], rm_figures: dict[str, dict[str, int]],
             placement: str) -> list[Row]:
    """The plan's rows for traced figures and an RM placement (resident RMs sit in every row)."""
    shape, spec, state = inputs.shape, inputs.policy, figures["state"]
    vllm = int(inputs.vllm_fraction * inputs.device_gb * GIB) if inputs.vllm_fraction else 0
    resident = sum(f["weights"] for f in rm_figures.values()) if placement == "resident" else 0
    base = state + vllm + resident
    tokens = f"({shape.prompt_tokens} + {shape.new_tokens}) tokens"
    rows = [Row("policy state", f"{inputs.policy_name}: weights {figures['weights'] / GIB:.1f} GiB ({spec.dtype}) "
                f"+ LoRA, AdamW {(state - figures['weights']) / GIB:.2f} GiB", state, base)]
    if resident:
        rows[0].shapes += f"; resident RMs {resident / GIB:.1f} GiB"
    if vllm:
        rows[0].shapes += f"; vLLM engine {vllm / GIB:.1f} GiB"
    described = {
        "context": f"{shape.prompts} prompts x {shape.prompt_tokens} tokens, no grad",
        "generation": f"{shape.generate_prompts} x {shape.samples} = {shape.generate_prompts * shape.samples} sequences"
                      f" per generate call x {tokens}"
                      if not vllm else "inside the vLLM engine's reservation",
        "update": f"{shape.micro_sequences} of {shape.update_sequences} sequences per micro-batch x {tokens}, "
                  f"fwd + bwd{', checkpointed' if spec.checkpointing else ''}",
        "evaluation": f"{shape.eval_prompts} prompts, greedy, x {tokens}"}
    for phase in POLICY_PHASES:
        if phase == "context" and inputs.context is None:
            continue
        own = 0 if (phase == "generation" and vllm) else phase_peak(figures, phase)
        rows.append(Row(phase, described[phase], own, base + own))
    for rm in inputs.rms:
        if rm.name not in rm_figures:
            continue
        weights, scoring = rm_figures[rm.name]["weights"], rm_figures[rm.name]["scoring"]
        rows.append(Row(f"RM {rm.name}", f"weights {weights / GIB:.1f} GiB ({rm.spec.dtype}) + {rm.batch_size} x "
                        f"{rm.max_length} tokens", weights + scoring,
                        base + scoring if placement == "resident" else base + weights + scoring))
    return rows


def vllm_notes(plan: MemoryPlan) -> list[str]:
    """vLLM keeps its own copy of the weights inside its reservation: say when that cannot work."""
    inputs = plan.inputs
    if not inputs.vllm_fraction:
        return []
    reserved = inputs.vllm_fraction * inputs.device_gb * GIB
    weights = plan.figures["weights"]
    if reserved <= weights:
        return [f"vLLM reserves {reserved / GIB:.1f} GiB ({inputs.vllm_fraction:g} of the device), less than its "
                f"copy of the weights ({weights / GIB:.1f} GiB): it cannot start; use policy.generation_backend=hf"]
    return [f"vLLM's KV cache gets {(reserved - weights) / GIB:.1f} GiB of its reservation (not traced)"]


def with_shape(inputs: PlanInputs, **changes) -> PlanInputs:
    """A copy of `inputs` with some step sizes changed (what a knob would do)."""
    return dataclasses.replace(inputs, shape=dataclasses.replace(inputs.shape, **changes))
