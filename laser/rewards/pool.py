"""The pool of K reward models the bandit chooses from; only the chosen ones ever run."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from laser.errors import LaserConfigError
from laser.rewards.base import RewardModel, ScoringBatch

_COUNTERS = ("calls", "batches", "seconds")


class RewardOutputError(ValueError):
    """An RM returned something other than one score per response."""


class RewardModelPool:
    """K named RMs, scored on demand.

    LASeR's point: the bandit picks ONE RM per batch, so each response costs one RM forward pass
    instead of K (a score ensemble runs all K). `score(arms, batch)` runs only the listed arms and
    the counters (`calls` = responses scored, `batches`, `seconds`) make that cost visible.

    Building a pool is cheap: RMs load their weights on first use, and `device` is applied to an
    RM (`rm.to(device)`) only when it first scores, so a pool of four 7B RMs costs nothing until the
    bandit chooses one.

    Args:
        models: name -> RM, in arm order (arm i is the i-th key); each RM's `name` is set to its key.
            A null entry removes that RM (so a config can compose a pool and drop an arm).
        device: where an RM is moved before its first use.
    """

    def __init__(self, models: Mapping[str, RewardModel | None], device: str = "cpu") -> None:
        models = {name: rm for name, rm in models.items() if rm is not None}
        if len(models) == 0:
            raise LaserConfigError("RewardModelPool needs at least one RM in `models`, got none")
        self._models: list[RewardModel] = []
        for name, rm in models.items():
            if not isinstance(rm, RewardModel):
                raise LaserConfigError(
                    f"rm_pool.models.{name} is a {type(rm).__name__}, expected a RewardModel (a `_target_`)"
                )
            rm.name = str(name)
            try:
                rm.check()  # e.g. a local model folder that does not exist: say so before any training
            except LaserConfigError as error:
                raise LaserConfigError(f"rm_pool.models.{name}: {error}") from None
            self._models.append(rm)
        self.device = str(device)
        self._placed: set[int] = set()
        self._counters = {rm.name: dict.fromkeys(_COUNTERS, 0.0) for rm in self._models}

    @property
    def names(self) -> list[str]:
        """RM names in arm order."""
        return [rm.name for rm in self._models]

    def __len__(self) -> int:
        return len(self._models)

    def __getitem__(self, arm: int) -> RewardModel:
        """The RM of arm index `arm`."""
        return self._models[arm]

    def index(self, name: str) -> int:
        """The arm index of the RM called `name`."""
        if name not in self.names:
            raise LaserConfigError(f"unknown RM {name!r}: the pool has {self.names}")
        return self.names.index(name)

    def score(self, arms: Sequence[int], batch: ScoringBatch) -> dict[int, torch.Tensor]:
        """Scores from each listed RM (each run once, on the whole batch), as float32 CPU tensors of
        shape [len(batch)]. Non-finite scores are returned as they are: the caller decides what to do."""
        results: dict[int, torch.Tensor] = {}
        for arm in dict.fromkeys(int(a) for a in arms):  # dedupe, keep order
            if not 0 <= arm < len(self):
                raise IndexError(
                    f"arm {arm} is not in the pool: valid arms are 0..{len(self) - 1} ({self.names})"
                )
            results[arm] = self._score_one(arm, batch)
        return results

    def _score_one(self, arm: int, batch: ScoringBatch) -> torch.Tensor:
        rm = self._models[arm]
        if arm not in self._placed:
            rm.to(self.device)
            self._placed.add(arm)
        start = time.perf_counter()
        scores = rm.score(batch)
        elapsed = time.perf_counter() - start
        expected = (len(batch),)
        if not isinstance(scores, torch.Tensor):
            raise RewardOutputError(
                f"RM {rm.name!r} returned a {type(scores).__name__}, expected a tensor of shape {expected}"
            )
        if tuple(scores.shape) != expected:
            raise RewardOutputError(
                f"RM {rm.name!r} returned shape {tuple(scores.shape)}, expected {expected} (one score per response)"
            )
        counters = self._counters[rm.name]
        counters["calls"] += len(batch)
        counters["batches"] += 1
        counters["seconds"] += elapsed
        return scores.detach().to("cpu", torch.float32)

    def counters(self) -> dict[str, dict[str, float]]:
        """Per RM name: `calls` (responses scored), `batches` (score invocations), `seconds` (wall)."""
        return {name: dict(values) for name, values in self._counters.items()}

    def call_counts(self) -> dict[str, int]:
        """Responses scored so far, per RM name."""
        return {name: int(values["calls"]) for name, values in self._counters.items()}

    def state_dict(self) -> dict[str, Any]:
        """Counters, plus the state of every RM that has one (e.g. `NoisyRM`'s generator)."""
        models = {rm.name: rm.state_dict() for rm in self._models if hasattr(rm, "state_dict")}
        return {"counters": self.counters(), "models": models}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` saved; the pool must have the same RM names."""
        saved = list(state["counters"])
        if saved != self.names:
            raise LaserConfigError(f"checkpoint RM pool {saved} does not match this pool {self.names}")
        self._counters = {
            name: {k: float(v) for k, v in values.items()} for name, values in state["counters"].items()
        }
        for rm in self._models:
            if rm.name in state.get("models", {}) and hasattr(rm, "load_state_dict"):
                rm.load_state_dict(state["models"][rm.name])
