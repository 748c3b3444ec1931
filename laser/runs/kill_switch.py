"""Fault injection for the fault-tolerance tests: `LASER_KILL_AT=<point>:<step>` makes the process
SIGKILL itself when it reaches that point of that LASeR step (points: generate, score, train,
bandit; for `checkpoint` the number is the epoch, i.e. iteration - 1, being written). Unset (always, outside tests), `maybe_die` is a dictionary lookup."""

from __future__ import annotations

import os
import signal

POINTS = ("generate", "score", "train", "bandit", "checkpoint")


def maybe_die(point: str, step: int) -> None:
    """SIGKILL this process if LASER_KILL_AT names this point and step (kill -9: no cleanup runs)."""
    target = os.environ.get("LASER_KILL_AT")
    if target and target == f"{point}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)
