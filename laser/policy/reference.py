"""The reference refresh's merge: fold each LoRA delta into its base weight, without rounding it away.

At a refresh the adapter's delta (B @ A * scale) is added to the frozen base weight and B is zeroed,
so the policy so far becomes the next iteration's reference. In float32 that is a plain `+=`. In
bfloat16 (the paper's Llama-3-8B) it is not: an iteration's delta at lr 5e-6 is mostly below half a
bf16 ulp of the weight (2^-9 of it), so `weight += delta` rounds most entries back to the old
weight, at every refresh, and that learning is gone for good.

So a low-precision weight keeps its rounding remainder in float32 (compensated, Kahan summation):
the bf16 weight and the fp32 remainder together hold the fp32 sum original + every delta so far,
and each refresh rounds that sum once. The merged weight is then the correctly rounded bf16 of the
unmerged policy's weight, i.e. the best bf16 can hold: within half an ulp, an error that does not
grow with the number of refreshes, and the reference's log-probs are as close to the live policy's
(bf16 base + fp32 LoRA in the forward) as bf16 allows (tests/policy/test_reference_merge.py). The
weight keeps its dtype, shape and sharding, and the remainders live beside the model (not in its
state_dict, so not in the vLLM export or a checkpoint), so the adapter-disabled reference, FSDP, the
vLLM export and the resume by replaying the merges (the same ops in the same order, so the same bits
on the same device) all work unchanged.

Memory: 4 bytes per element of every adapted low-precision weight, held from the first refresh on
the weight's device (sharded with it under trainer=fsdp). For Llama-3-8B with LoRA on q_proj and
v_proj: 32 layers x (4096 x 4096 + 1024 x 4096) x 4 B = 2.7 GB (2.5 GiB), next to the 16 GB of bf16
weights. Nothing in float32, whose merge is the plain `+=` and whose numbers are unchanged.
"""

from __future__ import annotations

import torch
from peft.tuners.lora import LoraLayer
from torch.distributed.tensor import DTensor

from laser.distributed.sharding import full_value, shard_like

ADAPTER = "default"


def lora_delta(layer: LoraLayer) -> torch.Tensor:
    """The live adapter's B @ A * scale, the whole matrix (gathered first when the layer is sharded)."""
    lora_a, lora_b = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
    if isinstance(lora_b, DTensor):
        return full_value(lora_b) @ full_value(lora_a) * layer.scaling[ADAPTER]
    return layer.get_delta_weight(ADAPTER)


def is_low_precision(dtype: torch.dtype) -> bool:
    """bfloat16 / float16 weights: too few mantissa bits to take a small delta by plain addition."""
    return dtype.is_floating_point and torch.finfo(dtype).bits < 32


@torch.no_grad()
def fold(weight: torch.Tensor, delta: torch.Tensor, remainder: torch.Tensor | None) -> torch.Tensor | None:
    """weight += delta in place (`delta` already shaped and sharded like `weight`); returns the new
    rounding remainder, float32, or None for a float32 weight (plain addition, exact to fp32).

    weight + remainder is exactly the previous fp32 sum (the remainder was computed exactly as that
    sum minus its rounding), so adding the delta to it and rounding once gives round(original + all
    deltas), and the new remainder is again exact: a value minus its nearest bf16 fits in fp32."""
    if not is_low_precision(weight.dtype):
        weight += delta.to(weight.dtype)
        return None
    exact = weight.float()
    if remainder is not None:
        exact += shard_like(weight, remainder)
    exact += delta.float()
    weight.copy_(exact)  # rounds to nearest (even)
    return exact.sub_(weight.float())


@torch.no_grad()
def merge_and_zero(layers: list[tuple[str, LoraLayer]], remainders: dict[str, torch.Tensor]) -> None:
    """Fold every layer's live delta into its base weight (updating `remainders`, keyed by layer
    name) and zero its B, so the adapter-disabled model is the policy so far."""
    for name, layer in layers:
        if ADAPTER not in layer.lora_A:
            continue
        weight = layer.get_base_layer().weight
        remainder = fold(weight, shard_like(weight, lora_delta(layer)), remainders.get(name))
        if remainder is not None:
            remainders[name] = remainder
        layer.lora_B[ADAPTER].weight.zero_()
