"""How the processes of a multi-process run (trainer=ddp|fsdp) stay in step.

Every rank runs the LASeR step on its own share of the batch, so everything the bandit sees must be
the same on every rank: one decision per step (rank 0's, broadcast), one fault verdict, counts summed
over ranks. State that legitimately differs per rank (random streams, the RMs' noise streams, the
rank's own counters) is checkpointed per rank, so a resumed run continues each rank where it stopped.
Every function here is a collective when world_size > 1: call it on every rank, in the same order.
"""

from __future__ import annotations

from typing import Any

import torch

from laser.errors import LaserConfigError
from laser.selection.base import Selector
from laser.step.decisions import Decision, decide


def any_rank(trainer, flag: bool) -> bool:
    """True if `flag` is true on any rank (just `flag` in a single process)."""
    if trainer.world_size == 1:
        return flag
    total = trainer.strategy.reduce(torch.tensor(float(flag), device=trainer.strategy.root_device), reduce_op="sum")
    return bool(total > 0)


def summed_counts(trainer, counts: dict[str, int]) -> dict[str, int]:
    """Per-name counts summed over ranks (same names, same order on every rank)."""
    if trainer.world_size == 1:
        return counts
    totals = trainer.strategy.reduce(torch.tensor([float(c) for c in counts.values()],
                                                  device=trainer.strategy.root_device), reduce_op="sum")
    return {name: int(total) for name, total in zip(counts, totals.tolist(), strict=True)}


def shared_decision(trainer, selector: Selector, contexts: torch.Tensor) -> tuple[list[Decision], int]:
    """The selector's decisions, and how many ranks disagreed with rank 0. In several processes: one
    decision for the global batch, made from the mean context of every rank's prompts, rank 0's
    choice applied everywhere."""
    if trainer.world_size == 1:
        return decide(selector, contexts), 0
    if selector.granularity != "batch":
        raise LaserConfigError("bandit.granularity=instance is not supported with several processes "
                               "(each rank would train its own bandit); use bandit.granularity=batch")
    strategy = trainer.strategy
    gathered = strategy.all_gather(contexts.to(strategy.root_device)).reshape(-1, contexts.shape[-1]).cpu()
    decision = decide(selector, gathered)[0]
    chosen = strategy.broadcast(decision.selection, src=0)
    disagree = torch.tensor(float(chosen.arms != decision.selection.arms), device=strategy.root_device)
    disagreeing = int(strategy.reduce(disagree, reduce_op="sum"))
    return [Decision(list(range(len(contexts))), decision.context, chosen)], disagreeing


def from_every_rank(trainer, local: dict[str, Any]) -> list[dict[str, Any]]:
    """`local` from each rank, in rank order (a list of one in a single process)."""
    if trainer.world_size == 1:
        return [local]
    gathered: list[Any] = [None] * trainer.world_size
    torch.distributed.all_gather_object(gathered, local)
    return gathered


def own_entry(per_rank: list[dict[str, Any]] | None, rank: int, world_size: int) -> dict[str, Any] | None:
    """This rank's entry of a checkpoint's per-rank state; None when the checkpoint has none or was
    written by a different number of ranks (the caller then falls back to rank 0's state)."""
    if not per_rank or len(per_rank) != world_size:
        return None
    return per_rank[rank]


def interleave(shares: list[list[Any]]) -> list[Any]:
    """Undo `items[rank::world]`: share r holds items r, r + world, r + 2 * world, ..."""
    whole: list[Any] = []
    for position in range(max((len(share) for share in shares), default=0)):
        whole += [share[position] for share in shares if position < len(share)]
    return whole


def interleaved(trainer, local: list[Any]) -> list[Any]:
    """Every rank's share of a list split as `items[rank::world]` (the evaluation split), back in the
    original order on every rank."""
    return interleave([share["items"] for share in from_every_rank(trainer, {"items": local})])
