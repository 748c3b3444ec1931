"""Tracing at 2 and 3 layers and extrapolating is what a full-depth trace gives (laser/plan/trace.py), and
sections keep a phase whose parts grow differently with depth (prefill, decoding) right."""

from __future__ import annotations

import pytest

from laser.plan.phases import StepShape, policy_trace
from laser.plan.shapes import model_config
from laser.plan.trace import ModelSpec, at_depth, phase_peak
from laser.selection.context import LastTokenContext
from laser.tiny import tiny_llama_config

SHAPE = StepShape(prompts=4, samples=4, pairs=2, prompt_tokens=40, new_tokens=24, eval_prompts=8)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_extrapolating_from_2_and_3_layers_matches_a_full_depth_trace(checkpointing):
    spec = ModelSpec(tiny_llama_config(1000, 128, 6, 4), dtype="float32", lora={"r": 8}, checkpointing=checkpointing)
    trace = policy_trace(spec, SHAPE, context=LastTokenContext())
    exact, extrapolated = at_depth(trace, 6, exact=True), at_depth(trace, 6)
    for key, value in exact.items():
        assert abs(extrapolated[key] - value) <= 0.01 * max(value, 1), key


@pytest.mark.slow  # starts processes or trains for seconds: the quick suite stays under 5 minutes
def test_extrapolation_holds_at_the_8b_shape():
    """At Llama-3-8B's widths (5 layers, a 480-sequence generation): the prefill and the last decoding step
    grow differently with depth; extrapolated separately, both match the full trace."""
    spec = ModelSpec(model_config("meta-llama/Meta-Llama-3-8B"), dtype="bfloat16", lora={}, checkpointing=True)
    shape = StepShape(prompts=16, samples=30, pairs=10, prompt_tokens=384, new_tokens=512, micro_batch=8)
    trace = policy_trace(spec, shape, phases=("generation", "update"))
    exact, extrapolated = at_depth(trace, 5, exact=True), at_depth(trace, 5)
    for phase in ("generation", "update"):
        assert abs(phase_peak(extrapolated, phase) - phase_peak(exact, phase)) <= 0.01 * phase_peak(exact, phase)


def test_generation_grows_with_its_sequences_and_the_update_with_its_micro_batch():
    spec = ModelSpec(tiny_llama_config(1000, 128, 2, 4), dtype="float32", lora={"r": 8})
    small = policy_trace(spec, SHAPE, phases=("generation", "update"))(2)
    more = StepShape(prompts=8, samples=4, pairs=2, prompt_tokens=40, new_tokens=24, micro_batch=None)
    large = policy_trace(spec, more, phases=("generation", "update"))(2)
    fewer = StepShape(prompts=8, samples=4, pairs=2, prompt_tokens=40, new_tokens=24, micro_batch=4)
    micro = policy_trace(spec, fewer, phases=("update",))(2)
    assert phase_peak(large, "generation") > 1.8 * phase_peak(small, "generation")
    assert phase_peak(micro, "update") < 0.5 * phase_peak(large, "update")  # 4 of 24 sequences at once
    assert small["state"] == large["state"] == micro["state"]


def test_generation_in_calls_of_fewer_prompts_plans_the_cache_of_one_call():
    """policy.prompts_per_generate=2 of 8 prompts: the plan traces one call of 2 x 4 sequences, as many as a
    step of 2 prompts in one call needs (laser/policy/generation.py)."""
    spec = ModelSpec(tiny_llama_config(1000, 128, 2, 4), dtype="float32", lora={"r": 8})
    whole = StepShape(prompts=8, samples=4, pairs=2, prompt_tokens=40, new_tokens=24)
    chunked = StepShape(prompts=8, samples=4, pairs=2, prompt_tokens=40, new_tokens=24, prompts_per_generate=2)
    small = StepShape(prompts=2, samples=4, pairs=2, prompt_tokens=40, new_tokens=24)
    peaks = [phase_peak(policy_trace(spec, shape, phases=("generation",))(2), "generation")
             for shape in (whole, chunked, small)]
    assert peaks[1] == peaks[2] and peaks[1] < 0.5 * peaks[0]
