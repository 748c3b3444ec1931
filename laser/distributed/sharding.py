"""Fully sharded data parallel (FSDP2, `torch.distributed.fsdp.fully_shard`) for the LoRA policy.

`trainer=fsdp` runs Lightning's ModelParallelStrategy with every rank in one data-parallel group;
`LaserModule.configure_model` calls `shard_policy`, which shards each decoder layer of the policy (its
frozen base weights and its LoRA weights) across the ranks. What stays outside the layers (embeddings,
final norm, LM head) is frozen and replicated. In a forward pass each layer gathers its weights, runs,
and frees them again, so a rank holds 1/world_size of the layers plus one layer at a time.

Generation is the exception: `generate` runs one forward per new token, and ranks stop at different
tokens, so per-layer gathers would deadlock. `gathered(model)` gathers every layer once before
generate (or embedding, or evaluation) and frees them after: the full policy sits on each device for
the duration of sampling, which is why FSDP here saves training memory (weights between forwards,
LoRA gradients, optimiser state) rather than sampling memory.

Everything else that reads or writes weights (the reference refresh's merge, the adapter in a
checkpoint) goes through `full_value` / `assign` / `shard_like`, which are plain tensor operations when
nothing is sharded, so the single-process path is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from lightning.pytorch.strategies import ModelParallelStrategy
from torch.distributed.tensor import DTensor, distribute_tensor

from laser.errors import LaserConfigError


def fsdp_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks of a transformers causal LM (the classes it names in `_no_split_modules`)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or [])
    layers = [m for m in base.modules() if type(m).__name__ in names]
    if not layers:
        raise LaserConfigError(f"{type(base).__name__} names no decoder layer class (_no_split_modules={sorted(names)}); "
                        "trainer=fsdp cannot shard it: use trainer=ddp")
    return layers


def shard_policy(model: torch.nn.Module, mesh) -> int:
    """Shard each decoder layer over `mesh` (idempotent: an already sharded model is left alone).
    Returns how many layers are sharded."""
    from torch.distributed.fsdp import fully_shard

    if fsdp_modules(model):
        return len(fsdp_modules(model))
    layers = decoder_layers(model)
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    return len(layers)


@contextmanager
def gathered(model: torch.nn.Module) -> Iterator[None]:
    """Every sharded layer's full weights on every rank for the duration (one all-gather per layer,
    no collectives inside): for generate, whose number of forwards differs between ranks."""
    modules = fsdp_modules(model)
    for module in modules:
        module.unshard()
        module.set_reshard_after_forward(False)
    try:
        yield
    finally:
        for module in modules:
            module.reshard()
            module.set_reshard_after_forward(True)


def full_value(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor (gathered from every rank if it is sharded; a collective then)."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def shard_like(parameter: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """`value` (the whole tensor, the same on every rank; or already sharded) on the parameter's
    device and sharded as the parameter is, in its own dtype."""
    if isinstance(parameter, DTensor) and not isinstance(value, DTensor):
        return distribute_tensor(value.to(parameter.device), parameter.device_mesh, parameter.placements)
    return value.to(parameter.device)


def assign(parameter: torch.Tensor, value: torch.Tensor) -> None:
    """parameter <- value (the whole tensor, the same on every rank), sharded as the parameter is."""
    if isinstance(parameter, DTensor):
        value = shard_like(parameter, value.to(parameter.device, parameter.dtype))
    parameter.copy_(value.to(parameter.device, parameter.dtype))


class LaserFSDPStrategy(ModelParallelStrategy):
    """Lightning's FSDP2 strategy with every rank in one data-parallel group (no tensor parallelism),
    and laser's checkpoint: the adapter, the merge history and the bandit are in the module's own
    checkpoint entries, so the frozen base weights are never gathered into it."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("save_distributed_checkpoint", False)  # one file, as every other trainer writes
        super().__init__(**kwargs)

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes
        self._tensor_parallel_size = 1
        super().setup_environment()

    def lightning_module_state_dict(self) -> dict:
        return {}  # LaserModule.on_save_checkpoint stores what a resume needs

    def optimizer_state(self, optimizer) -> dict:
        """The whole optimiser state keyed by parameter name (a collective; rank 0 writes it)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        optimizer = getattr(optimizer, "_optimizer", optimizer)  # a LightningOptimizer wraps it
        if not optimizer.state:  # fresh (cleared at a reference refresh): get_optimizer_state_dict would
            # initialise it with a zero-gradient step, and the next real step's Adam bias correction would
            # then count from 2, unlike a single-process run
            return {"state": {}, "param_groups": optimizer.state_dict()["param_groups"]}
        return get_optimizer_state_dict(self.model, optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def load_checkpoint(self, checkpoint_path, weights_only: bool | None = None) -> dict:
        """Read the one-file checkpoint on every rank; the optimiser state (full, as saved) is
        re-sharded onto this rank's parameters."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        path = self.broadcast(checkpoint_path)
        checkpoint = self.checkpoint_io.load_checkpoint(path, weights_only=weights_only)
        for optimizer, state in zip(self.optimizers, checkpoint.get("optimizer_states", []), strict=False):
            if not state.get("state"):
                continue  # saved fresh: the new optimiser already is
            set_optimizer_state_dict(self.model, getattr(optimizer, "_optimizer", optimizer), optim_state_dict=state,
                                     options=StateDictOptions(full_state_dict=True))
        return checkpoint
