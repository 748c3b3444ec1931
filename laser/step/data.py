"""Prompt batches for LASeR: `steps_per_iteration` training batches per iteration, and the test split.

`steps_per_iteration: null` is one pass over the training set per iteration (the paper's iteration):
ceil(train size / global batch) steps per process, where the global batch is `batch_size` x processes.
An explicit number is the steps each process takes, whatever the training set's size.

Batches are lists of `Example`s (the policy tokenises them once per step). The order is drawn from a
private RNG seeded by (seed, iteration), never from the global one, so a resumed run sees exactly the
batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Iterator

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

from laser.errors import LaserConfigError
from laser.tasks.base import Example, Task


def iteration_batches(
    examples: list[Example], batch_size: int, steps: int, seed: int, iteration: int, group_by_category: bool
) -> list[list[int]]:
    """Index batches for one iteration: shuffled passes over the data, cycled until `steps` batches.

    With `group_by_category`, every batch holds one category only (the categories' batches are then
    interleaved at random), so a per-batch bandit sees category-specific contexts.
    """
    rng = random.Random(f"{seed}:{iteration}")
    groups: dict[str, list[int]] = {}
    for index, example in enumerate(examples):
        groups.setdefault(example.category if group_by_category else "", []).append(index)
    batches: list[list[int]] = []
    while len(batches) < steps:
        round_batches = []
        for indices in groups.values():
            order = indices[:]
            rng.shuffle(order)
            round_batches += [order[i: i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
        if not round_batches:  # fewer examples than one batch: use what there is
            round_batches = [sum(groups.values(), [])]
        rng.shuffle(round_batches)
        batches += round_batches
    return batches[:steps]


class IterationBatchSampler(Sampler[list[int]]):
    """Yields one iteration's batches; Lightning calls `set_epoch` (epoch == iteration) before each."""

    def __init__(self, examples: list[Example], batch_size: int, steps: int, seed: int, group_by_category: bool):
        self.examples, self.batch_size, self.steps = examples, batch_size, steps
        self.seed, self.group_by_category, self.epoch = seed, group_by_category, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        # Under DDP every rank draws the same global order and takes its own share of the batches.
        rank, world = _rank_and_world()
        batches = iteration_batches(self.examples, self.batch_size, self.steps * world, self.seed, self.epoch,
                                    self.group_by_category)
        yield from batches[rank::world]

    def __len__(self) -> int:
        return self.steps


def one_pass_steps(train_size: int, batch_size: int, world_size: int = 1) -> int:
    """Steps per process that cover `train_size` prompts once: ceil(train_size / (batch_size x world_size))."""
    return max(1, math.ceil(train_size / (batch_size * world_size)))


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _as_list(batch: list[Example]) -> list[Example]:
    return batch


class PromptDataModule(L.LightningDataModule):
    """Training prompts (per iteration) and test prompts (for evaluation after each iteration).

    Args:
        task: the task whose splits to serve.
        batch_size: prompts per LASeR step (paper: 16); each prompt yields `num_samples` generations.
        steps_per_iteration: LASeR steps per process between reference refreshes and evaluations; None:
            one pass over the training set (`one_pass_steps`).
        eval_batch_size: prompts per greedy generate call at evaluation (more is faster, uses memory).
        eval_limit: evaluate on the first N test examples only (None: all).
        group_by_category: one category per batch (see `iteration_batches`).
        seed: seeds the batch order.
        held_out: uids of training examples never trained on (a guard's dev prompts, laser/guard/).
    """

    def __init__(self, task: Task, batch_size: int = 8, steps_per_iteration: int | None = 20,
                 eval_batch_size: int = 64, eval_limit: int | None = None, group_by_category: bool = False,
                 seed: int = 0, held_out: Collection[str] = ()) -> None:
        super().__init__()
        for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if not isinstance(value, int) or value < 1:
                raise LaserConfigError(f"data.{key}={value!r} must be an integer >= 1")
        steps = steps_per_iteration
        if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
            raise LaserConfigError(f"data.steps_per_iteration={steps!r} must be null (one pass over the training "
                                   "set) or an integer >= 1")
        if eval_limit is not None and (not isinstance(eval_limit, int) or eval_limit < 1):
            raise LaserConfigError(f"data.eval_limit={eval_limit!r} must be null or an integer >= 1")
        self.task = task
        self.batch_size, self.steps_per_iteration = batch_size, steps_per_iteration
        self.eval_batch_size, self.eval_limit = eval_batch_size, eval_limit
        self.group_by_category, self.seed = group_by_category, seed
        self.held_out = frozenset(held_out)

    def train_examples(self) -> list[Example]:
        """The task's training examples, less the held-out ones."""
        return [e for e in self.task.train_examples() if e.uid not in self.held_out]

    def world_size(self) -> int:
        """Processes sharing each iteration's batches: the attached trainer's, else torch.distributed's."""
        trainer = getattr(self, "trainer", None)
        return int(trainer.world_size) if trainer is not None else _rank_and_world()[1]

    def iteration_plan(self, world_size: int | None = None) -> dict[str, float | int]:
        """How much of the training set an iteration covers: `train_size`, `global_batch_size`,
        `steps_per_iteration` (per process) and `passes_per_iteration` (prompts trained per iteration
        over the training set's size)."""
        world = self.world_size() if world_size is None else world_size
        train_size = len(self.train_examples())
        steps = self.steps_per_iteration or one_pass_steps(train_size, self.batch_size, world)
        global_batch = self.batch_size * world
        return {"train_size": train_size, "global_batch_size": global_batch, "steps_per_iteration": steps,
                "passes_per_iteration": steps * global_batch / max(train_size, 1)}

    def train_dataloader(self) -> DataLoader:
        examples = self.train_examples()
        if not examples:
            raise LaserConfigError(f"task '{self.task.name}' has no training examples")
        steps = int(self.iteration_plan()["steps_per_iteration"])
        sampler = IterationBatchSampler(examples, self.batch_size, steps, self.seed, self.group_by_category)
        # An explicit generator keeps the DataLoader from drawing its base seed from the global RNG.
        return DataLoader(examples, batch_sampler=sampler, collate_fn=_as_list,
                          generator=torch.Generator().manual_seed(self.seed))

    def test_subset(self) -> list[Example]:
        examples = self.task.test_examples()
        return examples[: self.eval_limit] if self.eval_limit else examples

    def val_dataloader(self) -> DataLoader:
        examples = self.test_subset()
        if not examples:
            raise LaserConfigError(f"task '{self.task.name}' has no test examples")
        rank, world = _rank_and_world()  # several processes: each evaluates every world-th example
        return DataLoader(examples[rank::world], batch_size=self.eval_batch_size, shuffle=False, collate_fn=_as_list,
                          generator=torch.Generator().manual_seed(self.seed))
