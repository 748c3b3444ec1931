"""Tracing a model's memory without its weights: fake tensors, counted by `LiveBytes`.

A model is built on the meta device (no memory, no init), then materialised as fake tensors inside a
`FakeTensorMode` (`torch._subclasses.fake_tensor`): every op runs its shape function only, so an 8B
forward + backward costs well under a second on a CPU. The code traced is the run's own: the policy
is a real `Policy` object around the fake model (its `response_logps`, `embed`), the RMs are the real
RM adapters. To stay fast, a model is traced with two and with three decoder layers and the figures are
extrapolated to its real depth (`at_depth`): weights, KV cache and saved activations all grow linearly
with depth, and a test checks the extrapolation against a full-depth trace.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch
import transformers
from torch._subclasses.fake_tensor import FakeTensorMode

from laser.hf import resolve_dtype
from laser.plan.live import LiveBytes
from laser.plan.shapes import with_layers

# transformers >= 4.56 calls torch_dtype `dtype` (and warns about the old name)
_DTYPE_KEYWORD = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 or tuple(
    int(p) for p in transformers.__version__.split(".")[:2]) >= (4, 56) else "torch_dtype"
LORA_DEFAULTS = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.1, "target_modules": ["q_proj", "v_proj"]}


@dataclass(frozen=True)
class ModelSpec:
    """What to build: a `transformers` config, its Auto class, dtype, and for the policy LoRA and
    activation checkpointing (as `Policy` sets them up)."""

    config: Any
    auto_class: str = "AutoModelForCausalLM"
    dtype: str = "bfloat16"
    lora: dict | None = None
    checkpointing: bool = False
    extra: dict = field(default_factory=dict)  # e.g. a second model's spec (a DPO RM's reference)

    @property
    def layers(self) -> int:
        return int(self.config.num_hidden_layers)


def meta_model(spec: ModelSpec, layers: int | None = None) -> torch.nn.Module:
    """`spec`'s model with `layers` decoder layers on the meta device (weights take no memory)."""
    from peft import LoraConfig, get_peft_model

    from laser.policy.checkpointing import enable_activation_checkpointing

    config = with_layers(spec.config, layers or spec.layers)
    cls = getattr(transformers, spec.auto_class)
    dtype = resolve_dtype(spec.dtype)
    with torch.device("meta"):
        model = cls.from_config(config, **{_DTYPE_KEYWORD: dtype})
        if spec.checkpointing:
            enable_activation_checkpointing(model)
        if spec.lora is not None:
            model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **{**LORA_DEFAULTS, **spec.lora}))
    return model


@contextmanager
def fake_device() -> Iterator[LiveBytes]:
    """Fake tensors on the CPU, their live bytes counted: `model.to_empty(device="cpu")` inside it
    materialises a meta model (its weights counted, none allocated)."""
    with FakeTensorMode(allow_non_fake_inputs=True), LiveBytes("cpu") as live:
        yield live


Mark = Callable[[str], None]


def measure_phases(live: LiveBytes, phases: dict[str, Callable[[Mark], Any]]) -> dict[str, int]:
    """Each phase's peak bytes above what was live before it (phases run one after another). A phase
    calls `mark(section)` where its peak may grow differently with depth (a prefill's activations,
    a decoding step's KV cache): each section is its own figure, "phase/section", so that
    `at_depth` extrapolates each and `phase_peak` takes their maximum."""
    peaks: dict[str, int] = {}
    for name, run in phases.items():
        sections = _Sections(live, name, peaks)
        run(sections.mark)
        sections.close()
    return peaks


class _Sections:
    """The peaks of one phase's sections, above what was live when the phase began."""

    def __init__(self, live: LiveBytes, phase: str, peaks: dict[str, int]) -> None:
        self.live, self.phase, self.peaks = live, phase, peaks
        self.base, self.current = live.live, phase
        live.reset_peak()

    def close(self) -> None:
        self.peaks[self.current] = max(self.peaks.get(self.current, 0), self.live.peak - self.base)

    def mark(self, section: str) -> None:
        self.close()
        self.current = f"{self.phase}/{section}"
        self.live.reset_peak()


def phase_peak(figures: dict[str, int], phase: str) -> int:
    """A phase's peak: the largest of its sections' (see `measure_phases`)."""
    return max(value for key, value in figures.items() if key == phase or key.startswith(phase + "/"))


def at_depth(trace: Callable[[int], dict[str, int]], layers: int, exact: bool = False) -> dict[str, int]:
    """`trace(depth)`'s figures at `layers` layers, traced at 2 and 3 layers and extrapolated linearly
    (`exact`, or a model of at most 3 layers: traced at full depth). Not 1 and 2: with one layer a
    prefill peaks elsewhere than with several (the first layer's input is still live there)."""
    if exact or layers <= 3:
        return trace(layers)
    two, three = trace(2), trace(3)
    return {key: two[key] + (layers - 2) * (three[key] - two[key]) for key in two}


def traced_policy(model: torch.nn.Module, max_new_tokens: int = 1, temperature: float = 1.0,
                  top_p: float = 1.0):
    """A real `laser.policy.policy.Policy` around an already built (fake) peft model: its own methods
    (`response_logps`, `embed`) run, without loading a checkpoint or a tokenizer."""
    from laser.policy.policy import Policy

    policy = Policy.__new__(Policy)
    torch.nn.Module.__init__(policy)
    policy.model = model
    # no eos: every response runs to max_new_tokens (the plan's bound); responses decode to nothing
    policy.tokenizer = SimpleNamespace(pad_token_id=0, eos_token_id=None, batch_decode=lambda ids, **_: [""] * len(ids))
    base_forward = model.get_base_model().forward
    policy.keeps_logits = "logits_to_keep" in inspect.signature(base_forward).parameters
    policy.max_prompt_tokens, policy.max_new_tokens = 1 << 30, max_new_tokens
    policy.temperature, policy.top_p, policy.vllm, policy.prompts_per_generate = temperature, top_p, None, None
    policy.merged_adapters = []
    return policy


def adamw_with_state(parameters: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The run's optimiser (AdamW on the trainable weights) after one step, so its state exists."""
    optimiser = torch.optim.AdamW(parameters, lr=1e-6)
    for parameter in parameters:
        parameter.grad = torch.zeros_like(parameter)
    optimiser.step()
    optimiser.zero_grad(set_to_none=True)
    return optimiser
