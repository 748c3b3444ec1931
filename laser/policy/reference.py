"""The reference refresh: the policy at the end of iteration m becomes, exactly, both iteration m+1's
reference and the policy iteration m+1 starts from.

float32 weights: the adapter's delta (B @ A * scale) is added to the base weight and B is zeroed. The
merged weight differs from the unmerged forward by float32 rounding alone (~1e-7 relative), and the
default (tiny, float32) run's numbers are unchanged.

bfloat16 / float16 weights: a merge would round the delta away. An iteration's delta at lr 5e-6 is
mostly below half a bf16 ulp of the weight (2^-9 of it), so `weight += delta` (or a compensated sum,
rounded once per refresh) gives back a bf16 weight that has lost most of the iteration's update, and
iteration m+1 would start from, and be regularised towards, a policy that was never trained. So here
nothing is merged: the adapter's A and B are appended to a frozen adapter named "history" (the
earlier iterations' factors concatenated along the rank: rank r x refreshes, the same scale), and B is
zeroed. Each adapted layer computes

    bf16(base(x) + history(x) + live(x))     history and live in float32, summed before one rounding,

the policy as trained, with its whole update; the reference is the same forward with the live
adapter off (`live_adapter_off`), not with every adapter off. Before a refresh history(x) + live(x)
sums the same products as the longer history(x) after it, in another order: the two forwards differ
by float32 rounding inside the LoRA path (~1e-7 of the update), which the layer's bf16 output almost
never sees (tests/policy/test_reference_merge.py: log-probs equal within 1e-5 nats in bf16, measured
bitwise equal, where a merge moves them by 1e-2, as much as the iteration's whole update).

The history's weights are buffers (never trained, never in the optimiser; `requires_grad_` and
peft's adapter switching leave them alone), on the base weight's device and replicated on every rank
under trainer=fsdp (FSDP shards the layer's parameters, not these). They are not in a state_dict: a
checkpoint's merge history rebuilds them on resume (the same concatenation, so the same bits).

Cost at Llama-3-8B, LoRA r=16 on q_proj and v_proj (32 layers x (4096 x 16 + 16 x 4096 +
4096 x 16 + 16 x 1024) = 6.8M parameters per adapter), measured on meta tensors (FlopCounterMode):
- memory: 27.3 MB (float32) per refresh on every GPU; 273 MB after 10 iterations, next to 16 GB of
  bf16 weights (the compensated merge this replaces kept 2.7 GB of float32 remainders from the first
  refresh on);
- compute: +0.094% of a training pass's FLOPs per refresh (forward + backward of a 512-token
  sequence; the gradient reaches the layer's input through the frozen factors), +0.94% after 10;
  one extra LoRA pair of matmuls per adapted layer (64 at 8B) whatever the number of refreshes, not
  one per iteration, so kernel launches in generation do not grow with the iterations.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from peft.tuners.lora import LoraLayer
from torch.distributed.tensor import DTensor

from laser.distributed.sharding import full_value, shard_like

ADAPTER = "default"  # peft's name for the live (trained) adapter
HISTORY = "history"  # the frozen adapters of earlier iterations, one concatenated adapter per layer


class FrozenLinear(torch.nn.Module):
    """x @ weight.T with a fixed weight held as a non-persistent buffer: never trained, never in a
    state_dict, moved with the model. Computes what the nn.Linear (no bias) it was copied from did."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)


def is_low_precision(dtype: torch.dtype) -> bool:
    """bfloat16 / float16 weights: too few mantissa bits to take a small delta by plain addition."""
    return dtype.is_floating_point and torch.finfo(dtype).bits < 32


def live_factors(layer: LoraLayer) -> tuple[torch.Tensor, torch.Tensor]:
    """The live adapter's A [r, in] and B [out, r], whole (gathered first when the layer is sharded)."""
    return full_value(layer.lora_A[ADAPTER].weight.detach()), full_value(layer.lora_B[ADAPTER].weight.detach())


def lora_delta(layer: LoraLayer) -> torch.Tensor:
    """The live adapter's B @ A * scale, the whole matrix (gathered first when the layer is sharded)."""
    if isinstance(layer.lora_B[ADAPTER].weight, DTensor):
        lora_a, lora_b = live_factors(layer)
        return lora_b @ lora_a * layer.scaling[ADAPTER]
    return layer.get_delta_weight(ADAPTER)


def stacked_factors(layer: LoraLayer) -> tuple[torch.Tensor, torch.Tensor]:
    """History and live adapter as ONE adapter, concatenated along the rank (A [R, in], B [out, R],
    the live adapter's scale); the live adapter alone before the first stacking refresh."""
    lora_a, lora_b = live_factors(layer)
    if HISTORY not in layer.lora_A:
        return lora_a, lora_b
    history_a, history_b = layer.lora_A[HISTORY].weight, layer.lora_B[HISTORY].weight
    return torch.cat([history_a, lora_a.to(history_a.device)]), torch.cat([history_b, lora_b.to(history_b.device)], 1)


def stacks(layer: LoraLayer) -> bool:
    """Whether a refresh stacks this layer's adapter into its history (a low-precision base weight)
    rather than merging it into the weight (float32)."""
    return is_low_precision(layer.get_base_layer().weight.dtype)


@torch.no_grad()
def merge(layer: LoraLayer) -> None:
    """float32: base weight += B @ A * scale, in place (sharded like the weight)."""
    weight = layer.get_base_layer().weight
    weight += shard_like(weight, lora_delta(layer)).to(weight.dtype)


@torch.no_grad()
def stack(layer: LoraLayer) -> None:
    """Append the live A and B to the layer's frozen history (created at the first refresh, summed
    before the live adapter in the forward)."""
    lora_a, lora_b = stacked_factors(layer)
    device = layer.get_base_layer().weight.device
    layer.lora_A[HISTORY] = FrozenLinear(lora_a.to(device, copy=True))
    layer.lora_B[HISTORY] = FrozenLinear(lora_b.to(device, copy=True))
    layer.lora_dropout[HISTORY] = torch.nn.Identity()  # the policy as it is, not a dropout sample of it
    layer.scaling[HISTORY] = layer.scaling[ADAPTER]
    layer.r[HISTORY], layer.lora_alpha[HISTORY] = lora_a.shape[0], layer.lora_alpha[ADAPTER]
    layer.use_dora[HISTORY], layer.use_rslora[HISTORY], layer.lora_bias[HISTORY] = False, False, False
    layer.set_adapter([HISTORY, ADAPTER])  # history first; the live adapter stays trainable


@torch.no_grad()
def refresh(layers: list[tuple[str, LoraLayer]]) -> None:
    """Fold every layer's live adapter into what the reference computes (merged into a float32
    weight, stacked into a low-precision one's history) and zero its B, so the policy with its live
    adapter off, and with it on, is the policy so far."""
    for _, layer in layers:
        if ADAPTER not in layer.lora_A:
            continue
        if stacks(layer):
            stack(layer)
        else:
            merge(layer)
        layer.lora_B[ADAPTER].weight.zero_()


@contextmanager
def live_adapter_off(model: torch.nn.Module, layers: list[tuple[str, LoraLayer]]) -> Iterator[None]:
    """The reference for the duration: the policy with its live adapter off and its history (the
    earlier iterations, if stacked) on. Without a history, peft's `disable_adapter` (the base model,
    with every merge in it)."""
    stacked = [layer for _, layer in layers if HISTORY in layer.lora_A]
    if not stacked:
        with model.disable_adapter():
            yield
        return
    for layer in stacked:
        layer.set_adapter([HISTORY])  # as `disable_adapter` does, the live adapter's requires_grad is off
    try:
        yield
    finally:
        for layer in stacked:
            layer.set_adapter([HISTORY, ADAPTER])
