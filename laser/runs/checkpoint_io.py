"""Checkpoints written atomically (`laser.runs.files.replace_atomically`), so a run killed while writing
leaves the previous checkpoint intact and `resume=` always finds a readable `last.ckpt`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from laser.runs.files import replace_atomically
from laser.runs.kill_switch import maybe_die


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` with temp-file-and-rename writes (loading is unchanged: weights_only)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        def write(temp: Path) -> None:
            super(AtomicCheckpointIO, self).save_checkpoint(checkpoint, temp, storage_options)
            with open(temp, "rb") as handle:  # on disk before the rename makes it visible
                os.fsync(handle.fileno())
            maybe_die("checkpoint", int(checkpoint.get("epoch", -1)))  # fault-injection tests only

        replace_atomically(Path(path), write)
