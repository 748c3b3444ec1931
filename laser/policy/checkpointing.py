"""Activation (gradient) checkpointing on a transformers model: what fits an 8B DPO step on one GPU."""

from __future__ import annotations

import torch

from laser.errors import LaserConfigError


def enable_activation_checkpointing(model: torch.nn.Module) -> None:
    """Activation (gradient) checkpointing on a transformers model, non-reentrant, so frozen inputs
    under LoRA need no `enable_input_require_grads`. Training memory for activations drops from one
    set per layer to one per layer boundary; the backward pass reruns each layer's forward (~1/3
    more step time)."""
    kwargs = {"use_reentrant": False}
    supported = getattr(model, "supports_gradient_checkpointing", False)
    if not supported:
        raise LaserConfigError(f"policy.activation_checkpointing=true, but {type(model).__name__} does not support "
                               "it; set policy.activation_checkpointing=false")
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
