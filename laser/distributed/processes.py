"""How the processes of a multi-process run (trainer=ddp|fsdp) stay in step: the collectives laser uses.

Every rank runs the LASeR step on its own share of the batch, so everything the bandit sees must be
the same on every rank: one decision per step (rank 0's, broadcast: `laser.step.decisions`), one
fault verdict, counts summed over ranks. State that legitimately differs per rank (random streams,
the RMs' noise streams, the rank's own counters) is checkpointed per rank, so a resumed run
continues each rank where it stopped.
Every function here is a collective when world_size > 1: call it on every rank, in the same order.
"""

from __future__ import annotations

from typing import Any

import torch


def ranks_where(trainer, flag: bool) -> int:
    """How many ranks have `flag` true (`int(flag)` in a single process)."""
    if trainer.world_size == 1:
        return int(flag)
    total = trainer.strategy.reduce(torch.tensor(float(flag), device=trainer.strategy.root_device), reduce_op="sum")
    return int(total)


def any_rank(trainer, flag: bool) -> bool:
    """True if `flag` is true on any rank (just `flag` in a single process)."""
    return ranks_where(trainer, flag) > 0


def most_of_any_rank(trainer, count: int) -> int:
    """The largest `count` of any rank (`count` itself in a single process)."""
    if trainer.world_size == 1:
        return count
    return int(trainer.strategy.reduce(torch.tensor(float(count), device=trainer.strategy.root_device), reduce_op="max"))


def summed_counts(trainer, counts: dict[str, int]) -> dict[str, int]:
    """Per-name counts summed over ranks (same names, same order on every rank)."""
    if trainer.world_size == 1:
        return counts
    totals = trainer.strategy.reduce(torch.tensor([float(c) for c in counts.values()],
                                                  device=trainer.strategy.root_device), reduce_op="sum")
    return {name: int(total) for name, total in zip(counts, totals.tolist(), strict=True)}


def rows_of_every_rank(trainer, rows: torch.Tensor) -> torch.Tensor:
    """Every rank's rows [n, d], stacked in rank order into [world * n, d], on the CPU."""
    strategy = trainer.strategy
    return strategy.all_gather(rows.to(strategy.root_device)).reshape(-1, rows.shape[-1]).cpu()


def from_rank_zero(trainer, value: Any) -> Any:
    """Rank 0's `value` on every rank."""
    return trainer.strategy.broadcast(value, src=0)


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
