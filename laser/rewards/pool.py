"""The pool of K reward models the bandit chooses from; only the chosen ones ever run."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from laser.errors import LaserConfigError
from laser.rewards.base import RewardModel, ScoringBatch
from laser.rewards.errors import CallTimeout, RewardModelError, RewardOutputError, TimedCall

_COUNTERS = ("calls", "batches", "seconds", "tokens", "faults")
PLACEMENTS = ("resident", "offload", "auto")


class RewardModelPool:
    """K named RMs, scored on demand.

    LASeR's point: the bandit picks ONE RM per batch, so each response costs one RM forward pass
    instead of K (a score ensemble runs all K). `score(arms, batch)` runs only the listed arms and
    the counters (`calls` = responses scored, `batches`, `seconds`, `tokens` = input tokens through
    a model, `faults`) make that cost visible.

    Building a pool is cheap: RMs load their weights on first use, and `device` is applied to an
    RM (`rm.to(device)`) only when it first scores, so a pool of four 7B RMs costs nothing until the
    bandit chooses one.

    Faults: an RM that raises, takes longer than `timeout_s`, or returns the wrong number of scores
    makes `score` raise `RewardModelError` (kind "error", "timeout", "wrong_count"), counted in
    `faults`; the caller decides whether to skip the step or penalise the arm. NaN / inf scores are
    not faults: they are returned as they are.

    Args:
        models: name -> RM, in arm order (arm i is the i-th key); each RM's `name` is set to its key.
            A null entry removes that RM (so a config can compose a pool and drop an arm).
        device: where an RM is moved before it scores.
        placement: "resident": an RM stays on `device` after its first use (fast switches, memory of
            every RM used so far). "offload": only the RM scoring sits on `device`; it goes back to
            the CPU afterwards, so four 7B RMs need one RM's device memory, at the cost of moving
            its weights both ways on every call (~15 GB each way for a 7B RM in bfloat16). "auto": the
            memory plan picks one before the run starts (`laser.config.preflight.check_memory`:
            resident when every RM fits beside the policy's peak, else offload); a pool built without
            a plan (or told "auto" directly) offloads.
        timeout_s: longest wait for one RM call, in seconds (null: no limit). With a limit the call
            runs in a worker thread that cannot be stopped: after a timeout it keeps running (and
            keeps its memory) in the background, its result is discarded, and that RM fails fast
            with "timeout" until it has returned.
    """

    def __init__(self, models: Mapping[str, RewardModel | None], device: str = "cpu",
                 placement: str = "resident", timeout_s: float | None = None) -> None:
        models = {name: rm for name, rm in models.items() if rm is not None}
        if len(models) == 0:
            raise LaserConfigError("RewardModelPool needs at least one RM in `models`, got none")
        if placement not in PLACEMENTS:
            raise LaserConfigError(f"rm_pool.placement={placement!r} is not one of {list(PLACEMENTS)}")
        if timeout_s is not None and not (isinstance(timeout_s, int | float) and timeout_s > 0):
            raise LaserConfigError(f"rm_pool.timeout_s={timeout_s!r} must be a number of seconds > 0 or null")
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
        self.placement = placement
        self.timeout_s = None if timeout_s is None else float(timeout_s)
        self._placed: set[int] = set()  # arms whose RM sits on `device`
        self._running: dict[int, TimedCall] = {}  # arms whose timed-out call has not returned yet
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
        counters = self._counters[rm.name]
        try:
            scores = self._call(arm, batch)
            expected = (len(batch),)
            if not isinstance(scores, torch.Tensor):
                raise RewardOutputError(
                    rm.name, f"returned a {type(scores).__name__}, expected a tensor of shape {expected}"
                )
            if tuple(scores.shape) != expected:
                raise RewardOutputError(
                    rm.name,
                    f"returned shape {tuple(scores.shape)}, expected {expected} (one score per response)",
                )
        except RewardModelError as error:
            counters["faults"] += 1
            error.arm = arm  # the caller can penalise exactly this arm
            raise
        counters["calls"] += len(batch)
        counters["batches"] += 1
        return scores.detach().to("cpu", torch.float32)

    def _call(self, arm: int, batch: ScoringBatch) -> Any:
        """`rm.score(batch)` on `device`, within `timeout_s`, its seconds and tokens counted; an
        exception or timeout becomes a `RewardModelError` (a `LaserConfigError` passes through)."""
        rm = self._models[arm]
        counters = self._counters[rm.name]
        self._release_finished()
        if arm in self._running:
            raise RewardModelError(rm.name, "timeout", "its previous call timed out and is still running")
        tokens, start, call = rm.tokens_processed, time.perf_counter(), None
        try:
            if arm not in self._placed:
                rm.to(self.device)
                self._placed.add(arm)
            if self.timeout_s is None:
                return rm.score(batch)
            call = TimedCall(lambda: rm.score(batch))
            return call.result(self.timeout_s)
        except LaserConfigError:
            raise  # a config mistake is not a fault: it stops the run with its own message
        except RewardModelError as error:  # e.g. raised by a wrapped RM: keep its kind, name this RM
            if error.name == rm.name:
                raise
            raise RewardModelError(rm.name, error.kind, str(error)) from error
        except CallTimeout:
            assert call is not None  # only `call.result` raises it
            self._running[arm] = call  # offloaded once it returns; until then the RM fails fast
            raise RewardModelError(
                rm.name, "timeout", f"no answer within {self.timeout_s:g} s (the call keeps running in a "
                "background thread; its result will be discarded)"
            ) from None
        except Exception as error:
            raise RewardModelError(rm.name, "error", f"{type(error).__name__}: {error}") from error
        finally:
            try:
                if arm not in self._running:
                    self._release(arm)  # inside the timing: offload's transfers are part of the cost
            finally:
                counters["seconds"] += time.perf_counter() - start
                counters["tokens"] += rm.tokens_processed - tokens

    def _release(self, arm: int) -> None:
        """Offload: move the RM back to the CPU, freeing its device memory for the next RM."""
        if self.placement != "resident" and arm in self._placed:  # offload, or an unplanned auto
            self._models[arm].to("cpu")
            self._placed.discard(arm)

    def _release_finished(self) -> None:
        """Forget timed-out calls that have since returned (and offload their RMs)."""
        for arm, call in list(self._running.items()):
            if call.done:
                del self._running[arm]
                self._release(arm)

    def counters(self) -> dict[str, dict[str, float]]:
        """Per RM name: `calls` (responses scored), `batches` (score invocations), `seconds` (wall,
        failed calls included), `tokens` (input tokens through a model), `faults` (failed calls)."""
        return {name: dict(values) for name, values in self._counters.items()}

    def call_counts(self) -> dict[str, int]:
        """Responses scored so far, per RM name."""
        return {name: int(values["calls"]) for name, values in self._counters.items()}

    def token_counts(self) -> dict[str, int]:
        """Input tokens processed so far, per RM name (0 for programmatic RMs)."""
        return {name: int(values["tokens"]) for name, values in self._counters.items()}

    def fault_counts(self) -> dict[str, int]:
        """Failed score calls so far (errors, timeouts, wrong counts), per RM name."""
        return {name: int(values["faults"]) for name, values in self._counters.items()}

    def state_dict(self) -> dict[str, Any]:
        """Counters, plus the state of every RM that has one (e.g. `NoisyRM`'s generator)."""
        models = {rm.name: rm.state_dict() for rm in self._models if hasattr(rm, "state_dict")}
        return {"counters": self.counters(), "models": models}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` saved; the pool must have the same RM names."""
        saved = list(state["counters"])
        if saved != self.names:
            raise LaserConfigError(f"checkpoint RM pool {saved} does not match this pool {self.names}")
        # Keys added since (`tokens`, `faults`) start at 0 when resuming an older checkpoint.
        self._counters = {
            name: {key: float(values.get(key, 0.0)) for key in _COUNTERS}
            for name, values in state["counters"].items()
        }
        for rm in self._models:
            if rm.name in state.get("models", {}) and hasattr(rm, "load_state_dict"):
                rm.load_state_dict(state["models"][rm.name])
