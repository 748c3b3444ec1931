"""Checkpoints written atomically: to a temp file in the same folder, then renamed over the target.

A run killed while writing leaves the previous checkpoint intact (a rename is atomic on POSIX
filesystems), so `resume=` always finds a readable `last.ckpt`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from laser.runs.kill_switch import maybe_die


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` with temp-file-and-rename writes (loading is unchanged: weights_only)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            with open(tmp, "rb") as handle:  # on disk before the rename makes it visible
                os.fsync(handle.fileno())
            maybe_die("checkpoint", int(checkpoint.get("epoch", -1)))  # fault-injection tests only
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)  # a failed write leaves no debris (and the old checkpoint)
