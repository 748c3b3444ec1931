"""What can go wrong when an RM scores, as exceptions the LASeR module can act on, and the timed call.

An RM that raises, hangs or returns the wrong number of scores is a fault of that RM (a flaky remote
server, an out-of-memory error on a long batch), not of the run: `RewardModelPool.score` turns each
into a `RewardModelError` naming the RM and its `kind`, so that the caller can skip the step or
penalise the arm instead of crashing. Configuration mistakes (`LaserConfigError`, e.g. a model path
that does not exist) are not faults: they pass through and stop the run with their own message.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Literal

import torch

FaultKind = Literal["error", "timeout", "wrong_count", "nonfinite_scores"]


class RewardModelError(RuntimeError):
    """An RM failed to score a batch. One line that names the RM.

    Attributes:
        name: the RM's pool name.
        kind: "error" (the RM raised), "timeout" (no answer within the pool's `timeout_s`) or
            "wrong_count" (not one score per response).
        detail: what happened, one line.
        arm: the RM's arm index, set by `RewardModelPool.score` (None elsewhere).
    """

    def __init__(self, name: str, kind: FaultKind, detail: str, message: str | None = None) -> None:
        self.name, self.kind, self.detail = name, kind, _one_line(detail)
        self.arm: int | None = None
        super().__init__(_one_line(message) if message else f"RM {name!r} failed ({kind}): {self.detail}")


class RewardOutputError(RewardModelError, ValueError):
    """An RM returned something other than one score per response (kind "wrong_count").

    Still a `ValueError`, as before faults had a kind."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(name, "wrong_count", detail, message=f"RM {name!r} {detail}")


class CallTimeout(TimeoutError):
    """A `TimedCall` did not end in time (distinct from a `TimeoutError` the RM itself raised)."""


class TimedCall:
    """`fn()` in a daemon thread, waited for at most `timeout_s` seconds.

    Python cannot stop a thread, so after a timeout the call keeps running in the background (a stuck
    forward pass keeps its memory and its share of the device) and its result is thrown away. The
    thread is a daemon, so it never keeps the process alive at exit. `done` tells whether it ended.
    """

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn
        self._result: Any = None
        self._error: BaseException | None = None
        self._finished = threading.Event()
        # A thread starts on CUDA device 0: carry the caller's device over (one GPU per rank in DDP).
        self._cuda_device = torch.cuda.current_device() if torch.cuda.is_initialized() else None
        self._thread = threading.Thread(target=self._run, name="laser-rm-call", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            if self._cuda_device is not None:
                torch.cuda.set_device(self._cuda_device)
            self._result = self._fn()
        except BaseException as error:  # handed to the waiting thread, which decides
            self._error = error
        finally:
            self._finished.set()

    @property
    def done(self) -> bool:
        """Whether the call has returned or raised."""
        return self._finished.is_set()

    def result(self, timeout_s: float | None) -> Any:
        """What `fn()` returned (or raise what it raised); `CallTimeout` when it has not ended in time."""
        if not self._finished.wait(timeout_s):
            raise CallTimeout(f"no answer within {timeout_s:g} s")
        if self._error is not None:
            raise self._error
        return self._result


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return " | ".join(lines)
